# Must NOT build: the wasm target has neither time.now_ns nor http.send, so
#   opa build -t wasm --capabilities policies/capabilities.json -e bad/verdict test/policies/bad-capability
# fails with "rego_type_error: undefined function time.now_ns" (and http.send). Policies get the time from
# input.now instead. Excluded from the normal runs with `--ignore bad-capability`.
package bad

verdict := {"now": time.now_ns(), "ip": http.send({"method": "get", "url": "https://ipinfo.io"}).body}
