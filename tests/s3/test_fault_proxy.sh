#!/usr/bin/env bash
# Self-test of tests/s3/fault_proxy.py against a real S3 server (Ceph RGW from
# tests/s3/rgw.sh), driven with boto3 (path-style, no retries) through the
# proxy. One line per check ("ok: ..." or "FAIL: ..."); exit 1 on any failure,
# exit 0 with "SKIP: <reason>" when rgw.sh cannot run here (its exit 3).
#
#   tests/s3/test_fault_proxy.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
work=$(mktemp -d "${TMPDIR:-/tmp}/fault_proxy_test.XXXXXX")
proxy_pid=""
rgw_started=""

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  if [[ -n $proxy_pid ]] && kill -0 "$proxy_pid" 2>/dev/null; then
    kill -TERM "$proxy_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$proxy_pid" 2>/dev/null || true
  fi
  if [[ -n $rgw_started ]]; then
    "$here/rgw.sh" stop "$work/rgw" >/dev/null 2>&1 || true
  fi
  if ((rc != 0)) && [[ -f $work/proxy.stderr && -s $work/proxy.stderr ]]; then
    echo "--- fault_proxy stderr:" >&2
    tail -n 40 "$work/proxy.stderr" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rgw_rc=0
rgw_started=1
"$here/rgw.sh" start "$work/rgw" >"$work/rgw.out" 2>"$work/rgw.err" || rgw_rc=$?
if ((rgw_rc == 3)); then
  rgw_started=""
  echo "SKIP: $(sed -n 's/^rgw.sh: SKIP: //p' "$work/rgw.err" | head -n 1)"
  exit 0
elif ((rgw_rc != 0)); then
  cat "$work/rgw.err" >&2
  echo "FAIL: tests/s3/rgw.sh start exited $rgw_rc"
  exit 1
fi
# shellcheck disable=SC1091
. "$work/rgw/env"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

python3 "$here/fault_proxy.py" --upstream "$S3_ENDPOINT" --control "$work/control.json" \
  --log "$work/log.jsonl" --port-file "$work/port" 2>"$work/proxy.stderr" &
proxy_pid=$!
for _ in $(seq 100); do
  [[ -s $work/port ]] && break
  kill -0 "$proxy_pid" 2>/dev/null || break
  sleep 0.05
done
if [[ ! -s $work/port ]]; then
  echo "FAIL: the proxy wrote no port file"
  exit 1
fi
proxy="http://127.0.0.1:$(cat "$work/port")"
echo "ok: proxy listening at $proxy, upstream $S3_ENDPOINT"

status=0
python3 - "$proxy" "$work" <<'PY' || status=$?
import base64, hashlib, json, os, sys, time

proxy, work = sys.argv[1], sys.argv[2]
control = os.path.join(work, "control.json")
log_path = os.path.join(work, "log.jsonl")

for name in list(os.environ):
    if name.startswith("AWS_") and name not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        del os.environ[name]
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ReadTimeoutError

failures = 0
sent = 0  # requests the clients sent, counted by a botocore hook


def check(ok, what):
    global failures
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures += 1


def count_send(**kwargs):
    global sent
    sent += 1


def client(read_timeout=30, signed_payload=True):
    s3_options = {"addressing_style": "path"}
    if not signed_payload:
        # x-amz-content-sha256: UNSIGNED-PAYLOAD, so Content-MD5 is the only
        # check of the body.
        s3_options["payload_signing_enabled"] = False
    options = dict(
        s3=s3_options,
        signature_version="s3v4",
        # max_attempts counts retries (1 = one retry); total_max_attempts
        # counts attempts, so 1 is no retry at all.
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=read_timeout,
    )
    try:
        Config(request_checksum_calculation="when_required")
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    except TypeError:
        pass
    session = boto3.session.Session(
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name=os.environ.get("AWS_REGION") or "us-east-1",
    )
    c = session.client("s3", endpoint_url=proxy, config=Config(**options))
    c.meta.events.register("before-send.s3", count_send)
    return c


def rules(*rs):
    tmp = control + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"rules": list(rs)}, f)
    os.replace(tmp, control)


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def put(s3, key, data):
    return s3.put_object(Bucket=bucket, Key=key, Body=data, ContentMD5=md5_b64(data))


def error_of(e):
    return (e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
            e.response.get("Error", {}).get("Code"))


def exists(s3, key):
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if error_of(e)[0] == 404:
            return False
        raise


s3 = client()
bucket = "fault-proxy-test"
payload = os.urandom(300 * 1024 + 7)

# 1. A plain round trip, HEAD's Content-Length passed through.
rules()
s3.create_bucket(Bucket=bucket)
put(s3, "plain", payload)
got = s3.get_object(Bucket=bucket, Key="plain")["Body"].read()
check(got == payload, f"plain put/get round trip through the proxy: {len(got)} bytes identical")
head = s3.head_object(Bucket=bucket, Key="plain")
check(head["ContentLength"] == len(payload), f"HEAD passes Content-Length {head['ContentLength']} through")

# 2. status 503: exactly the first PUT fails.
rules({"method": "PUT", "path_contains": "/k503", "action": "status", "status": 503})
try:
    put(s3, "k503", payload)
    check(False, "first PUT under a status 503 rule fails")
except ClientError as e:
    check(error_of(e) == (503, "SlowDown"), f"first PUT under a status 503 rule fails: {error_of(e)}")
try:
    put(s3, "k503", payload)
    ok = s3.get_object(Bucket=bucket, Key="k503")["Body"].read() == payload
    check(ok, "second PUT under the 503 rule succeeds and stores the object")
except ClientError as e:
    check(False, f"second PUT under the 503 rule succeeds: {error_of(e)}")

# 3. flip_request_byte: the server refuses the body, nothing is stored.
rules({"method": "PUT", "path_contains": "/kflip", "action": "flip_request_byte"})
try:
    put(s3, "kflip", payload)
    check(False, "PUT with a flipped request byte is refused")
except ClientError as e:
    status, code = error_of(e)
    check(status == 400 and code in ("BadDigest", "XAmzContentSHA256Mismatch"),
          f"PUT with a flipped request byte is refused: {status} {code}")
rules()
check(not exists(s3, "kflip"), "nothing is stored under the flipped PUT's key")

# 3b. The same with an unsigned payload: Content-MD5 alone catches it.
rules({"method": "PUT", "path_contains": "/kmd5", "action": "flip_request_byte", "offset": 0})
try:
    put(client(signed_payload=False), "kmd5", payload)
    check(False, "PUT (UNSIGNED-PAYLOAD) with a flipped request byte is refused")
except ClientError as e:
    status, code = error_of(e)
    check((status, code) == (400, "BadDigest"),
          f"PUT (UNSIGNED-PAYLOAD, Content-MD5) with a flipped request byte is refused: {status} {code}")
rules()
check(not exists(s3, "kmd5"), "nothing is stored under that key either")

# 4. flip_response_byte: exactly one byte differs.
rules({"method": "GET", "path_contains": "/plain", "action": "flip_response_byte", "offset": 1000})
got = s3.get_object(Bucket=bucket, Key="plain")["Body"].read()
diff = [i for i in range(min(len(got), len(payload))) if got[i] != payload[i]]
check(len(got) == len(payload) and diff == [1000] and got[1000] == payload[1000] ^ 1,
      f"GET with a flipped response byte differs in exactly one byte: {diff[:5]}")

# 5. reset_response: the client gets a connection error mid-body.
rules({"method": "GET", "path_contains": "/plain", "action": "reset_response", "after_bytes": 1000})
try:
    s3.get_object(Bucket=bucket, Key="plain")["Body"].read()
    check(False, "GET under reset_response gives a connection error")
except ClientError as e:
    check(False, f"GET under reset_response gives a connection error, not {error_of(e)}")
except Exception as e:
    check(True, f"GET under reset_response gives a connection error: {type(e).__name__}: {e}")

# 6. reset_request: the PUT fails without an answer, nothing stored.
rules({"method": "PUT", "path_contains": "/kreset", "action": "reset_request", "after_bytes": 4096})
try:
    put(s3, "kreset", payload)
    check(False, "PUT under reset_request gives a connection error")
except ClientError as e:
    check(False, f"PUT under reset_request gives a connection error, not {error_of(e)}")
except Exception as e:
    check(True, f"PUT under reset_request gives a connection error: {type(e).__name__}")
rules()
check(not exists(s3, "kreset"), "nothing is stored under the reset PUT's key")

# 7. stall 5 s against a 1 s read timeout.
rules({"method": "GET", "path_contains": "/plain", "action": "stall", "seconds": 5})
impatient = client(read_timeout=1)
start = time.monotonic()
try:
    impatient.get_object(Bucket=bucket, Key="plain")["Body"].read()
    check(False, "GET under stall times out")
except ReadTimeoutError:
    elapsed = time.monotonic() - start
    check(elapsed < 4, f"GET under a 5 s stall times out after {elapsed:.1f} s (read timeout 1 s)")
except Exception as e:
    check(False, f"GET under stall times out, not {type(e).__name__}: {e}")
rules()

# 8. The log: one line per request (the stalled one is logged when its stall
# ends), signatures removed.
deadline = time.monotonic() + 10
while True:
    with open(log_path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if len(lines) >= sent or time.monotonic() > deadline:
        break
    time.sleep(0.2)
check(len(lines) == sent and sorted(r["n"] for r in lines) == list(range(1, sent + 1)),
      f"the log has one line per request: {len(lines)} lines, {sent} requests sent")
key_id = os.environ["AWS_ACCESS_KEY_ID"]
auth = [r["headers"].get("authorization") for r in lines]
check(all(a == f"AWS4-HMAC-SHA256 Credential={key_id}/..." for a in auth),
      "every logged authorization is 'AWS4-HMAC-SHA256 Credential=<key id>/...'")
with open(log_path) as f:
    raw = f.read()
check("Signature=" not in raw and os.environ["AWS_SECRET_ACCESS_KEY"] not in raw,
      "no signature and no secret key in the log")
faults = [(r["method"], r["fault"], r["status"]) for r in lines if r["fault"]]
expected = [("PUT", "status", 503), ("PUT", "flip_request_byte", 400), ("PUT", "flip_request_byte", 400),
            ("GET", "flip_response_byte", 200), ("GET", "reset_response", 200),
            ("PUT", "reset_request", None), ("GET", "stall", None)]
check(sorted(faults, key=str) == sorted(expected, key=str), f"the log records the faults: {faults}")
unsigned = [r["headers"].get("x-amz-content-sha256") for r in lines if r["path"].endswith("/kmd5") and r["method"] == "PUT"]
check(unsigned == ["UNSIGNED-PAYLOAD"], f"the unsigned PUT was sent with x-amz-content-sha256 {unsigned}")
ok503 = [r for r in lines if r["path"].endswith("/k503") and r["method"] == "PUT"]
check([(r["fault"], r["status"], r["body_bytes"]) for r in ok503]
      == [("status", 503, len(payload)), (None, 200, len(payload))],
      "the log shows the injected 503, then the forwarded 200, with the body sizes")

print(f"{'FAILED' if failures else 'passed'}: {failures} failure(s)", flush=True)
sys.exit(1 if failures else 0)
PY

kill -TERM "$proxy_pid"
proxy_rc=0
wait "$proxy_pid" || proxy_rc=$?
proxy_pid=""
if ((proxy_rc == 0)); then
  echo "ok: the proxy exits 0 on SIGTERM"
else
  echo "FAIL: the proxy exited $proxy_rc on SIGTERM"
  status=1
fi
if grep -q Traceback "$work/proxy.stderr"; then
  echo "FAIL: the proxy printed a traceback:"
  cat "$work/proxy.stderr"
  status=1
else
  echo "ok: the proxy printed no traceback"
fi
exit "$status"
