#!/usr/bin/env bash
# CI for a pamgate policy repository: every step a policy change must pass, then a signed bundle stamped with
# the commit, published where the gateways fetch it. .github/workflows/policy.yml runs this same script; run it
# locally the same way:
#
#   OPA=opa PAMGATE="npx pamgate" SIGNING_KEY_FILE=~/keys/bundle-signing.pem PUBLISH_DIR=/srv/bundles ./ci.sh
#
# Steps (each prints "==> step"; a failure ends the run with `ci.sh: FAILED at "<step>": <why>`):
#   preflight       the tools are there; the work tree is committed (the bundle's revision must name a commit
#                   that holds exactly these sources)
#   opa fmt         every .rego file is formatted as `opa fmt` would write it
#   opa check       `opa check --strict` with the restricted capabilities.json (a builtin the wasm target lacks
#                   fails here, not in production)
#   opa test        unit tests (tests/*_test.rego)
#   coverage        the policies' coverage by the tests, at least MIN_COVERAGE percent
#   conformance     `pamgate policy test`: tests/fixtures/*.json evaluated by `opa eval` and by the compiled
#                   policy.wasm, both equal to the expected verdict
#   build + sign    `pamgate bundle build` (opa build -t wasm) with --revision <commit> and --signing-key
#   verify          `pamgate bundle inspect --verification-key`: the signature verifies with the public key the
#                   gateways use, the revision is the commit, and the gateway's loader accepts the bundle
#   publish         to PUBLISH_DIR (write, then rename: the gateway's file watcher and a static HTTP server never
#                   see half a file) and/or PUT to PUBLISH_URL (curl -T), as pamgate.tar.gz and pamgate-<commit>.tar.gz
#
# Environment:
#   OPA                     the opa CLI (default: opa on PATH); pin the version pamgate pins
#   PAMGATE                 how to run pamgate (default: pamgate on PATH; e.g. "npx pamgate", "node /opt/pamgate/bin/pamgate.js")
#   CAPABILITIES            default capabilities.json: a copy of the pamgate release's policies/capabilities.json
#   MIN_COVERAGE            default 90
#   SIGNING_KEY_FILE        PEM private key (OPA's bundle signing); required to publish
#   SIGNING_ALG             default RS256
#   VERIFICATION_KEY_FILE   PEM public key the gateways verify with (policy.verification.key_file);
#                           default keys/bundle-signing.pub.pem
#   PUBLISH_DIR             a directory served to the gateways (a static HTTP server's root, a shared volume)
#   PUBLISH_URL             a URL to PUT the bundle to, e.g. https://bundles.internal/pamgate/pamgate.tar.gz;
#                           PUBLISH_TOKEN, if set, is sent as a bearer token
#   OUT                     where the bundle is built (default build/)
#   ALLOW_DIRTY=1           build from an uncommitted tree (the revision then ends in -dirty; never published)
set -euo pipefail
cd "$(dirname "$0")"

OPA=${OPA:-opa}
read -r -a PAMGATE_CMD <<<"${PAMGATE:-pamgate}"
CAPABILITIES=${CAPABILITIES:-capabilities.json}
MIN_COVERAGE=${MIN_COVERAGE:-90}
SIGNING_KEY_FILE=${SIGNING_KEY_FILE:-}
SIGNING_ALG=${SIGNING_ALG:-RS256}
VERIFICATION_KEY_FILE=${VERIFICATION_KEY_FILE:-keys/bundle-signing.pub.pem}
PUBLISH_DIR=${PUBLISH_DIR:-}
PUBLISH_URL=${PUBLISH_URL:-}
PUBLISH_TOKEN=${PUBLISH_TOKEN:-}
OUT=${OUT:-build}
ALLOW_DIRTY=${ALLOW_DIRTY:-}

POLICIES=policies
TESTS=tests
FIXTURES=tests/fixtures
BUNDLE="$OUT/pamgate.tar.gz"

CURRENT="setup"
step() {
  CURRENT=$1
  printf '\n==> %s\n' "$1"
}
fail() {
  printf '\nci.sh: FAILED at "%s": %s\n' "$CURRENT" "$*" >&2
  FAILED_REPORTED=1
  exit 1
}
# A command that fails under `set -e` without calling fail still names its step.
trap 'rc=$?; if [ "$rc" -ne 0 ] && [ "${FAILED_REPORTED:-}" != 1 ]; then printf "\nci.sh: FAILED at \"%s\" (exit %d)\n" "$CURRENT" "$rc" >&2; fi' EXIT
pamgate() { "${PAMGATE_CMD[@]}" "$@"; }
# Runs a step's command; on failure prints its output and fails the step with `message`.
check() {
  local message=$1
  shift
  local output
  if ! output=$("$@" 2>&1); then
    printf '%s\n' "$output" >&2
    fail "$message"
  fi
  [ -z "$output" ] || printf '%s\n' "$output"
}

step "preflight"
command -v "$OPA" >/dev/null || fail "opa not found (set OPA=/path/to/opa)"
OPA=$(command -v "$OPA")
# pamgate policy test and pamgate bundle build run this same opa.
export PAMGATE_OPA="$OPA"
pamgate_version=$(pamgate --version 2>&1) || fail "pamgate not found (set PAMGATE, e.g. PAMGATE=\"npx pamgate\")"
[ -f "$CAPABILITIES" ] || fail "$CAPABILITIES is missing: copy policies/capabilities.json of the pamgate release you deploy"
REVISION=$(git rev-parse HEAD 2>/dev/null) || fail "not a git repository: the bundle's revision is the commit"
if [ -n "$(git status --porcelain -- .)" ]; then
  [ "$ALLOW_DIRTY" = 1 ] || fail "uncommitted changes (git status): commit them, so the bundle's revision names the sources it was built from (or ALLOW_DIRTY=1 to try a build, never published)"
  REVISION="$REVISION-dirty"
fi
echo "opa $("$OPA" version | sed -n 's/^Version: //p'), $pamgate_version, revision $REVISION"

step "opa fmt"
unformatted=$("$OPA" fmt --list "$POLICIES" "$TESTS" 2>&1) || {
  printf '%s\n' "$unformatted" >&2
  fail "opa fmt cannot parse the policies (above)"
}
[ -z "$unformatted" ] || fail "not formatted (run: opa fmt -w $POLICIES $TESTS): $(echo "$unformatted" | tr '\n' ' ')"
echo "formatted"

step "opa check --strict"
check "opa check --strict found errors (above)" \
  "$OPA" check --strict --capabilities "$CAPABILITIES" --ignore fixtures "$POLICIES" "$TESTS"
echo "no errors"

step "opa test"
check "unit tests failed (above)" \
  "$OPA" test --capabilities "$CAPABILITIES" --ignore fixtures "$POLICIES" "$TESTS"

step "coverage"
report=$("$OPA" test --capabilities "$CAPABILITIES" --ignore fixtures --coverage --format json "$POLICIES" "$TESTS") ||
  fail "opa test --coverage failed"
coverage=$(printf '%s' "$report" | "$OPA" eval --stdin-input --format raw 'input.coverage')
uncovered=$(printf '%s' "$report" | "$OPA" eval --stdin-input --format raw \
  'concat("\n", [sprintf("  %s: lines %s", [f, concat(", ", [sprintf("%d-%d", [r.start.row, r.end.row]) | some r in c.not_covered])]) | some f, c in input.files; count(object.get(c, "not_covered", [])) > 0])')
if awk -v c="$coverage" -v m="$MIN_COVERAGE" 'BEGIN { exit !(c + 0 < m + 0) }'; then
  [ -z "$uncovered" ] || printf 'not covered by any test:\n%s\n' "$uncovered" >&2
  fail "coverage ${coverage}% is below the minimum ${MIN_COVERAGE}%: add tests for the lines above"
fi
echo "${coverage}% (minimum ${MIN_COVERAGE}%)"

step "conformance (pamgate policy test)"
check "pamgate policy test failed: the wasm build disagrees with opa eval or with a fixture's expected verdict (above)" \
  pamgate policy test --policies "$POLICIES" --tests "$TESTS" --fixtures "$FIXTURES" \
  --capabilities "$CAPABILITIES" --min-coverage "$MIN_COVERAGE"

step "build + sign"
mkdir -p "$OUT"
sign=()
if [ -n "$SIGNING_KEY_FILE" ]; then
  [ -r "$SIGNING_KEY_FILE" ] || fail "SIGNING_KEY_FILE $SIGNING_KEY_FILE cannot be read"
  sign=(--signing-key "$SIGNING_KEY_FILE" --signing-alg "$SIGNING_ALG")
elif [ -n "$PUBLISH_DIR$PUBLISH_URL" ]; then
  fail "refusing to publish an unsigned bundle: set SIGNING_KEY_FILE (gateways verify with policy.verification)"
else
  echo "no SIGNING_KEY_FILE: the bundle is not signed (fine for a pull request; it is not published)"
fi
check "the bundle could not be built (above)" \
  pamgate bundle build --policies "$POLICIES" --output "$BUNDLE" --revision "$REVISION" \
  --capabilities "$CAPABILITIES" "${sign[@]}"

step "verify"
inspect=(pamgate bundle inspect "$BUNDLE" --format json)
if [ -n "$SIGNING_KEY_FILE" ]; then
  [ -r "$VERIFICATION_KEY_FILE" ] || fail "VERIFICATION_KEY_FILE $VERIFICATION_KEY_FILE cannot be read"
  inspect+=(--verification-key "$VERIFICATION_KEY_FILE" --verification-alg "$SIGNING_ALG")
fi
info=$("${inspect[@]}" 2>&1) || {
  printf '%s\n' "$info" >&2
  fail "the bundle does not verify or does not load (above)"
}
built_revision=$(printf '%s' "$info" | "$OPA" eval --stdin-input --format raw 'input.revision')
signature=$(printf '%s' "$info" | "$OPA" eval --stdin-input --format raw 'input.signature')
[ "$built_revision" = "$REVISION" ] || fail "the bundle says revision $built_revision, not $REVISION"
echo "revision $built_revision; signature: $signature; entrypoints load"

step "publish"
if [ -z "$PUBLISH_DIR$PUBLISH_URL" ]; then
  echo "skipped: set PUBLISH_DIR or PUBLISH_URL"
else
  case "$REVISION" in *-dirty) fail "a bundle of an uncommitted tree is never published" ;; esac
  if [ -n "$PUBLISH_DIR" ]; then
    mkdir -p "$PUBLISH_DIR"
    for name in "pamgate-$REVISION.tar.gz" pamgate.tar.gz; do
      cp "$BUNDLE" "$PUBLISH_DIR/.$name.tmp.$$"
      mv -f "$PUBLISH_DIR/.$name.tmp.$$" "$PUBLISH_DIR/$name"
    done
    echo "published to $PUBLISH_DIR/pamgate.tar.gz (and pamgate-$REVISION.tar.gz)"
  fi
  if [ -n "$PUBLISH_URL" ]; then
    auth=()
    [ -z "$PUBLISH_TOKEN" ] || auth=(-H "Authorization: Bearer $PUBLISH_TOKEN")
    curl -fsS --retry 3 "${auth[@]}" -T "$BUNDLE" "$PUBLISH_URL" ||
      fail "PUT $PUBLISH_URL failed"
    echo "published to $PUBLISH_URL"
  fi
fi

printf '\nci.sh: ok — %s, revision %s\n' "$BUNDLE" "$REVISION"
