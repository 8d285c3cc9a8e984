#!/usr/bin/env bash
# Smoke test of a deployed mlambda stack through the CLI; the pipeline runs it after each deploy.
#
#   infra/smoke_test.sh STACK_NAME
#
# 1. A short-lived admin key, written straight to the stack's keys table (mlambda keys bootstrap,
#    with the caller's AWS credentials); it is revoked on the way out, whatever happened.
# 2. Without a key the API answers 401: the authorizer stands in front of every route.
# 3. With the key, GET /me names it and the registry answers GET /models.
# 4. With SMOKE_MODEL and SMOKE_INSTANCES (the --json of `mlambda predict`), one prediction.
#
# The stack's outputs are read with the AWS CLI; MLAMBDA_API_URL and MLAMBDA_KEYS_TABLE, when set,
# stand for them (ApiUrl, ApiKeysTableName). MLAMBDA_CLI names the mlambda command (default: mlambda).
set -euo pipefail

stack="${1:?usage: infra/smoke_test.sh STACK_NAME}"
mlambda="${MLAMBDA_CLI:-mlambda}"

stack_output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
fail() { echo "smoke test FAILED: $*" >&2; exit 1; }

MLAMBDA_API_URL="${MLAMBDA_API_URL:-$(stack_output ApiUrl)}"
keys_table="${MLAMBDA_KEYS_TABLE:-$(stack_output ApiKeysTableName)}"
export MLAMBDA_API_URL
echo "smoke test of $stack at $MLAMBDA_API_URL"

created="$("$mlambda" -o json keys bootstrap --table "$keys_table" --stack "$stack" --name "smoke-${GITHUB_RUN_ID:-$(date +%s)}" --scopes admin)"
key_id="$(json_field key_id <<<"$created")"
MLAMBDA_API_KEY="$(json_field api_key <<<"$created")"
if [[ "${GITHUB_ACTIONS:-}" == "true" ]]; then echo "::add-mask::$MLAMBDA_API_KEY"; fi
export MLAMBDA_API_KEY
revoke() {
  "$mlambda" keys revoke "$key_id" >/dev/null || fail "could not revoke the smoke key $key_id: revoke it by hand"
  echo "ok: smoke key $key_id revoked"
}
trap revoke EXIT

status="$(curl --silent --output /dev/null --write-out '%{http_code}' "$MLAMBDA_API_URL/me")"
[[ "$status" == 401 ]] || fail "GET /me without a key answered $status, expected 401"
echo "ok: GET /me without a key -> 401"

me="$("$mlambda" -o json whoami)"
[[ "$(json_field key_id <<<"$me")" == "$key_id" ]] || fail "GET /me answered $me, expected key $key_id"
echo "ok: GET /me -> $key_id"

"$mlambda" models list >/dev/null
echo "ok: GET /models"

if [[ -n "${SMOKE_MODEL:-}" ]]; then
  "$mlambda" predict "$SMOKE_MODEL" --json "${SMOKE_INSTANCES:?SMOKE_INSTANCES is the --json of one prediction}" >/dev/null
  echo "ok: POST /models/$SMOKE_MODEL/predict"
fi
echo "smoke test passed"
