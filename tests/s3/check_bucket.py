#!/usr/bin/env python3
"""An S3 client independent of pgward, for the tests to check what pgward wrote.

  check_bucket.py list ENDPOINT BUCKET PREFIX        "KEY SIZE" per object, sorted by key
  check_bucket.py get ENDPOINT BUCKET KEY OUTFILE    the object into OUTFILE
  check_bucket.py sha256 ENDPOINT BUCKET KEY         the object's SHA-256, in hex
  check_bucket.py uploads ENDPOINT BUCKET PREFIX     "KEY UPLOAD_ID" per multipart upload in progress
  check_bucket.py snapshot ENDPOINT BUCKET PREFIX    "object KEY SIZE SHA256" per object (each read
                                                     whole), then "upload KEY UPLOAD_ID" per upload
  check_bucket.py mkbucket ENDPOINT BUCKET [--lock]  a bucket (--lock: with object lock enabled)
  check_bucket.py put ENDPOINT BUCKET KEY FILE       FILE as the object, in one PUT
  check_bucket.py rm ENDPOINT BUCKET KEY             deletes the object
  check_bucket.py serve ENDPOINT                     the commands above, many in one run (the
                                                     test harness's, to load boto3 once): one
                                                     JSON array per stdin line, [COMMAND, ARGS...]
                                                     without ENDPOINT; one JSON line per command,
                                                     {"rc", "out", "err"}, as a run of its own gives

The credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_REGION (default us-east-1) alone: no profile, config or credentials file
of the caller's is read. Path-style addressing. An S3 error: its code and
message on stderr ("check_bucket.py: ERROR: SignatureDoesNotMatch: ..."),
exit 1; a usage error: exit 2.
"""

import base64
import hashlib
import os
import sys

CHUNK = 1 << 20


def fail(message, code=1):
    print(f"check_bucket.py: {message}", file=sys.stderr)
    sys.exit(code)


def isolate_environment():
    # Only the three variables above count: a profile, an endpoint or a
    # config file of the caller's must not change what is checked.
    for name in list(os.environ):
        if name.startswith("AWS_") and name not in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
        ):
            del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    # An operator's proxy is not for the loopback server.
    for name in ("NO_PROXY", "no_proxy"):
        current = os.environ.get(name, "")
        os.environ[name] = "127.0.0.1,localhost" + ("," + current if current else "")


def client(endpoint):
    try:
        import boto3
        from botocore.config import Config
    except ImportError as e:
        fail(f"python3 cannot import boto3 ({e}); Debian: apt-get install python3-boto3")
    key_id = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        fail("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set", 2)
    options = dict(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
    )
    # botocore 1.36 and later send x-amz-checksum-* headers by default, which
    # older Ceph rejects; older botocore has no such option (and sends none).
    try:
        Config(request_checksum_calculation="when_required")
    except TypeError:
        pass
    else:
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    session = boto3.session.Session(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=os.environ.get("AWS_REGION") or "us-east-1",
    )
    return session.client("s3", endpoint_url=endpoint, config=Config(**options))


def paginate(s3, operation, **kwargs):
    return s3.get_paginator(operation).paginate(**kwargs)


def cmd_list(s3, bucket, prefix):
    rows = []
    for page in paginate(s3, "list_objects_v2", Bucket=bucket, Prefix=prefix):
        rows.extend((o["Key"], o["Size"]) for o in page.get("Contents", []))
    for key, size in sorted(rows):
        print(f"{key} {size}")


def cmd_get(s3, bucket, key, outfile):
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with open(outfile, "wb") as out:
        for chunk in iter(lambda: body.read(CHUNK), b""):
            out.write(chunk)


def cmd_sha256(s3, bucket, key):
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(CHUNK), b""):
        digest.update(chunk)
    print(digest.hexdigest())


def cmd_uploads(s3, bucket, prefix):
    rows = []
    for page in paginate(s3, "list_multipart_uploads", Bucket=bucket, Prefix=prefix):
        rows.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
    for key, upload_id in sorted(rows):
        print(f"{key} {upload_id}")


def cmd_snapshot(s3, bucket, prefix):
    rows = []
    for page in paginate(s3, "list_objects_v2", Bucket=bucket, Prefix=prefix):
        rows.extend((o["Key"], o["Size"]) for o in page.get("Contents", []))
    for key, size in sorted(rows):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(CHUNK), b""):
            digest.update(chunk)
        print(f"object {key} {size} {digest.hexdigest()}")
    uploads = []
    for page in paginate(s3, "list_multipart_uploads", Bucket=bucket, Prefix=prefix):
        uploads.extend((u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
    for key, upload_id in sorted(uploads):
        print(f"upload {key} {upload_id}")


def cmd_mkbucket(s3, bucket, *flags):
    if any(f != "--lock" for f in flags):
        fail(f"mkbucket: unknown option {' '.join(flags)}", 2)
    kwargs = {"Bucket": bucket}
    if flags:
        kwargs["ObjectLockEnabledForBucket"] = True
    s3.create_bucket(**kwargs)


def cmd_put(s3, bucket, key, path):
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            md5.update(chunk)
    # Content-MD5: what a bucket with object lock requires of a PUT.
    with open(path, "rb") as f:
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=f,
            ContentMD5=base64.b64encode(md5.digest()).decode(),
        )


def cmd_rm(s3, bucket, key):
    s3.delete_object(Bucket=bucket, Key=key)


COMMANDS = {
    # name: (function, number of arguments after ENDPOINT, optional flags allowed)
    "list": (cmd_list, 2, False),
    "get": (cmd_get, 3, False),
    "sha256": (cmd_sha256, 2, False),
    "uploads": (cmd_uploads, 2, False),
    "snapshot": (cmd_snapshot, 2, False),
    "mkbucket": (cmd_mkbucket, 1, True),
    "put": (cmd_put, 3, False),
    "rm": (cmd_rm, 2, False),
}


def serve(endpoint):
    import contextlib
    import io
    import json

    isolate_environment()
    s3 = client(endpoint)
    for line in sys.stdin:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                words = json.loads(line)
                rc = run(s3, words[0], words[1:]) if words and words[0] in COMMANDS else usage()
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
            except Exception as e:  # noqa: BLE001 - one bad request must not end the others
                print(f"check_bucket.py: ERROR: {type(e).__name__}: {e}", file=sys.stderr)
                rc = 1
        print(json.dumps({"rc": rc, "out": out.getvalue(), "err": err.getvalue()}), flush=True)
    return 0


def usage():
    print(__doc__.strip(), file=sys.stderr)
    return 2


def main(argv):
    if len(argv) == 3 and argv[1] == "serve":
        return serve(argv[2])
    if len(argv) < 3 or argv[1] not in COMMANDS:
        return usage()
    isolate_environment()
    return run(client(argv[2]), argv[1], argv[3:])


def run(s3, command, args):
    function, count, flags = COMMANDS[command]
    if len(args) < count or (len(args) > count and not flags):
        fail(f"{command}: expected {count} arguments after ENDPOINT, got {len(args)}", 2)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        function(s3, *args)
    except ClientError as e:
        error = e.response.get("Error", {})
        code = error.get("Code") or "?"
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        message = error.get("Message") or "no message"
        fail(f"ERROR: {code}: {message} (HTTP {status}; {command} {' '.join(args)})")
    except BotoCoreError as e:
        fail(f"ERROR: {e} ({command} {' '.join(args)})")
    except OSError as e:
        fail(f"ERROR: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
