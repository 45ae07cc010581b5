# Must NOT build: the wasm target has neither time.now_ns nor http.send, and rand.intn is left out because a
# verdict must be a function of the input (verdicts are reused for identical inputs), so
#   opa build -t wasm --capabilities policies/capabilities.json -e bad/verdict test/policies/bad-capability
# fails with "rego_type_error: undefined function time.now_ns" (and http.send, rand.intn). Policies get the time from
# input.now instead. Excluded from the normal runs with `--ignore bad-capability`.
package bad

verdict := {"now": time.now_ns(), "ip": http.send({"method": "get", "url": "https://ipinfo.io"}).body, "dice": rand.intn("d", 6)}
