#!/usr/bin/env bash
# A throwaway S3 server for the tests: Ceph's RADOS Gateway on a one-node
# cluster (one ceph-mon, one ceph-osd on memstore, so the data lives in RAM,
# and radosgw), everything on loopback and under DIR, run as the invoking user.
#
#   tests/s3/rgw.sh start DIR   DIR must not exist or be empty. Starts the
#                               daemons, makes an S3 user, waits until a signed
#                               request works, writes DIR/env (S3_ENDPOINT,
#                               AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#                               AWS_REGION) and DIR/pids ("NAME PID" lines) and
#                               prints the endpoint. Already running there:
#                               prints the endpoint. On a failure: the tail of
#                               the daemon's log on stderr, what it started
#                               stopped, DIR kept for its logs, exit 1.
#   tests/s3/rgw.sh stop DIR [--keep]
#                               TERM the daemons by pid (KILL after 5 s) and
#                               remove DIR (--keep: leave it, for its logs).
#   tests/s3/rgw.sh status DIR  exit 0 when the endpoint answers a signed request.
#
# A tool it needs missing: exit 3 and one line "rgw.sh: SKIP: <reason>" on
# stderr (the test harness skips the S3 tests with that reason).
# RGW_OWNER_PID=PID (start): a watcher stops the daemons, keeping DIR, when that
# process is gone without having stopped them (a test binary that crashed or
# was killed).
set -euo pipefail

me=rgw.sh
script=$(readlink -f "${BASH_SOURCE[0]}")
# An operator's proxy is not for loopback, and no CEPH_* of the caller's shell
# reaches the tools.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
unset CEPH_ARGS CEPH_CONF CEPH_KEYRING

usage() {
  echo "usage: $me start DIR | stop DIR [--keep] | status DIR" >&2
  exit 2
}

skip() {
  echo "$me: SKIP: $*" >&2
  exit 3
}

# Every ceph and radosgw-admin call is bounded: without a ceph-mgr some of
# them wait forever.
ceph_call() {  # TOOL ARGS...
  local tool=$1
  shift
  if [[ $tool == ceph ]]; then
    set -- --connect-timeout 20 "$@"
  fi
  timeout -k 2 30 "$tool" -c "$dir/ceph.conf" "$@"
}

# The one place that checks for the tools, so the skip names what to install.
check_tools() {
  local tool package
  for tool in ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw radosgw-admin:ceph-common \
    ceph-authtool:ceph-common monmaptool:ceph-base ceph:ceph-common timeout:coreutils \
    python3:python3 curl:curl; do
    package=${tool#*:}
    tool=${tool%%:*}
    command -v "$tool" >/dev/null 2>&1 ||
      skip "$tool is not installed (Debian: apt-get install $package; scripts/install-deps.sh full installs it)"
  done
  python3 -c 'import boto3' >/dev/null 2>&1 ||
    skip "python3 cannot import boto3 (Debian: apt-get install python3-boto3)"
}

abs_dir() {
  [[ -n ${1:-} ]] || usage
  if [[ -d $1 ]]; then
    (cd "$1" && pwd -P)
  else
    local parent
    parent=$(cd "$(dirname "$1")" 2>/dev/null && pwd -P) || {
      echo "$me: the parent of $1 does not exist" >&2
      exit 1
    }
    echo "$parent/$(basename "$1")"
  fi
}

# Two distinct free loopback ports.
free_ports() {
  python3 - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

random_text() {  # LENGTH ALPHABET
  local out=""
  while ((${#out} < $1)); do
    out+=$(head -c 256 /dev/urandom | LC_ALL=C tr -dc "$2")
  done
  echo "${out:0:$1}"
}

# Whether PID still runs and is still one of DIR's (its command line names
# DIR's ceph.conf, or it is DIR's watcher): a pid reused since is left alone.
live_pid() {  # DIR PID
  local cmdline
  [[ -r /proc/$2/cmdline ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$2/cmdline") || return 1
  [[ $cmdline == *"$1/ceph.conf"* || $cmdline == *"$me _watch $1 "* ]]
}

# TERM to the pids, KILL to what still runs after 5 s; waits until all are gone.
stop_pids() {  # DIR PID...
  local d=$1 pid i sig left=()
  shift
  for pid in "$@"; do
    if live_pid "$d" "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      left+=("$pid")
    fi
  done
  for sig in KILL ""; do
    for ((i = 0; i < 100 && ${#left[@]} > 0; i++)); do
      sleep 0.05
      local still=()
      for pid in "${left[@]}"; do
        if live_pid "$d" "$pid"; then still+=("$pid"); fi
      done
      left=("${still[@]+"${still[@]}"}")
    done
    [[ -n $sig ]] || break
    for pid in "${left[@]+"${left[@]}"}"; do
      echo "$me: pid $pid did not stop within 5 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
}

# The daemons of DIR/pids in the order that lets each stop at once: radosgw
# (and the watcher), whose shutdown still talks to the OSD, then the OSD, which
# tells the monitor it goes down, then the monitor. Any other order costs
# seconds of timeouts.
stop_daemons() {  # DIR
  local d=$1 name pid wave
  [[ -f $d/pids ]] || return 0
  for wave in "watch rgw" "osd" "mon"; do
    local pids=()
    while read -r name pid; do
      [[ $pid =~ ^[0-9]+$ && " $wave " == *" $name "* ]] && pids+=("$pid")
    done <"$d/pids"
    stop_pids "$d" "${pids[@]+"${pids[@]}"}"
  done
}

# A signed S3 request (ListBuckets) with DIR/env's credentials and nothing
# else of the environment's AWS_* (a profile, a config file). Exit 0 when it
# worked, 75 when the server refused or could not be reached (worth a retry), 1
# on any other failure.
signed_request_works() {  # DIR
  [[ -f $1/env ]] || return 1
  (
    while IFS= read -r name; do
      [[ $name == AWS_* ]] && unset "$name"
    done < <(compgen -e)
    set -a
    # shellcheck disable=SC1091
    . "$1/env"
    set +a
    export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
    timeout -k 1 10 python3 - <<'PY'
import os, sys
import boto3
import botocore.exceptions
from botocore.config import Config
options = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
               connect_timeout=3, read_timeout=5)
try:
    Config(request_checksum_calculation="when_required")
    options.update(request_checksum_calculation="when_required",
                   response_checksum_validation="when_required")
except TypeError:
    pass
session = boto3.session.Session(aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                                region_name=os.environ["AWS_REGION"])
s3 = session.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], config=Config(**options))
try:
    s3.list_buckets()
except (botocore.exceptions.ClientError, botocore.exceptions.ConnectionError,
        botocore.exceptions.ReadTimeoutError) as e:
    print(e, file=sys.stderr)
    sys.exit(75)
PY
  )
}

# What rgw.sh start does when a step failed: the daemon's log, everything
# started stopped, DIR kept.
start_failed() {
  local rc=$1
  trap - EXIT
  ((rc != 0)) || exit 0
  echo "$me: start failed: ${step:-?}" >&2
  local log
  for log in "${step_logs[@]+"${step_logs[@]}"}"; do
    if [[ -s $log ]]; then
      echo "$me: --- the last lines of $log:" >&2
      tail -n 30 "$log" >&2
    fi
  done
  stop_daemons "$dir"
  echo "$me: stopped what it started; the logs are kept in $dir" >&2
  exit "$rc"
}

fail() {
  step=$1
  exit 1
}

# Runs a daemon in the foreground, as a background job of this script, its
# output in DIR/log/NAME.out; records its pid.
launch() {  # NAME COMMAND...
  local name=$1
  shift
  "$@" </dev/null >"$dir/log/$name.out" 2>&1 &
  echo "$name $!" >>"$dir/pids"
  eval "pid_$name=$!"
}

alive() {  # NAME
  local var=pid_$1
  kill -0 "${!var}" 2>/dev/null
}

cmd_start() {
  dir=$(abs_dir "${1:-}")
  check_tools
  if [[ -e $dir ]]; then
    if [[ -f $dir/env ]] && signed_request_works "$dir"; then
      sed -n 's/^S3_ENDPOINT=//p' "$dir/env"
      return 0
    fi
    [[ -d $dir && -z $(ls -A "$dir") ]] || {
      echo "$me: $dir exists and is not empty" >&2
      exit 1
    }
  fi
  local started=$SECONDS
  mkdir -p "$dir"
  mkdir -p "$dir"/{run,log,mon,osd,rgw,crash,tmp}
  : >"$dir/pids"
  step_logs=()
  trap 'start_failed $?' EXIT
  # Interrupted: the EXIT trap still stops what was started.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP

  # Not root: ceph daemons keep the invoking user. As root: --setuser/--setgroup
  # of root, so nothing tries to switch to the ceph user.
  local -a as_user=()
  if (($(id -u) == 0)); then
    as_user=(--setuser "$(id -un)" --setgroup "$(id -gn)")
  fi

  step="choosing ports"
  local mon_port rgw_port
  read -r mon_port rgw_port < <(free_ports)
  [[ -n $rgw_port ]] || fail "no free loopback ports"
  local fsid osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)

  cat >"$dir/ceph.conf" <<EOF
# rgw.sh's one-node cluster; every path is under $dir.
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
public addr = 127.0.0.1
ms bind msgr2 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.\$pid.asok
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = true
crash dir = $dir/crash
tmp dir = $dir/tmp
mon data = $dir/mon
osd data = $dir/osd
rgw data = $dir/rgw
mgr data = $dir/mgr
mds data = $dir/mds
osd journal = $dir/osd/journal
mon cluster log file = $dir/log/cluster.log
mon debug dump location = $dir/log/\$name.tdump
immutable object cache sock = $dir/run/immutable_object_cache_sock
osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-4294967296}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
paxos propose interval = 0.05
osd mon shutdown timeout = 1

[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw enable lc threads = false
EOF

  step="making the keys"
  step_logs=("$dir/log/setup.log")
  local keyring=$dir/keyring
  {
    ceph-authtool --create-keyring "$keyring" --gen-key -n mon. --cap mon 'allow *'
    ceph-authtool "$keyring" --gen-key -n client.admin \
      --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'
    ceph-authtool "$keyring" --gen-key -n osd.0 \
      --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd'
    ceph-authtool "$keyring" --gen-key -n client.rgw.gw \
      --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw'
    chmod 0600 "$keyring"
    step="making the monitor"
    monmaptool --create --enable-all-features --fsid "$fsid" \
      --addv a "[v1:127.0.0.1:$mon_port]" "$dir/monmap"
    ceph-mon -c "$dir/ceph.conf" -i a --mkfs --monmap "$dir/monmap" --keyring "$keyring" \
      "${as_user[@]}"
  } >>"$dir/log/setup.log" 2>&1 || fail "$step"

  step="starting ceph-mon"
  step_logs=("$dir/log/mon.a.out" "$dir/log/mon.a.log")
  launch mon ceph-mon -c "$dir/ceph.conf" -i a -f "${as_user[@]}"

  step="adding osd.0 to the cluster"
  step_logs=("$dir/log/setup.log" "$dir/log/mon.a.log")
  ceph_call ceph osd new "$osd_uuid" 0 >>"$dir/log/setup.log" 2>&1 || fail "$step"

  step="making osd.0's store"
  step_logs=("$dir/log/setup.log" "$dir/log/osd.0.log")
  ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" "${as_user[@]}" \
    >>"$dir/log/setup.log" 2>&1 || fail "$step"

  step="starting ceph-osd"
  step_logs=("$dir/log/osd.0.out" "$dir/log/osd.0.log")
  launch osd ceph-osd -c "$dir/ceph.conf" -i 0 -f "${as_user[@]}"

  step="starting radosgw"
  step_logs=("$dir/log/rgw.out" "$dir/log/client.rgw.gw.log")
  launch rgw radosgw -c "$dir/ceph.conf" -n client.rgw.gw -f "${as_user[@]}"

  step="waiting for radosgw to answer on 127.0.0.1:$rgw_port"
  local deadline=$((SECONDS + 60))
  until curl -s -o /dev/null --noproxy '*' --max-time 2 "http://127.0.0.1:$rgw_port/"; do
    alive rgw || fail "radosgw exited before it answered"
    alive osd || {
      step_logs=("$dir/log/osd.0.out" "$dir/log/osd.0.log")
      fail "ceph-osd exited"
    }
    alive mon || {
      step_logs=("$dir/log/mon.a.out" "$dir/log/mon.a.log")
      fail "ceph-mon exited"
    }
    ((SECONDS < deadline)) || fail "$step: no answer within 60 s"
    sleep 0.05
  done

  step="making the S3 user"
  step_logs=("$dir/log/setup.log")
  local access_key secret_key
  access_key=$(random_text 20 'A-Z0-9')
  secret_key=$(random_text 40 'A-Za-z0-9')
  ceph_call radosgw-admin user create --uid pgward-test --display-name "pgward tests" \
    --access-key "$access_key" --secret-key "$secret_key" >>"$dir/log/setup.log" 2>&1 ||
    fail "$step"

  local endpoint=http://127.0.0.1:$rgw_port
  cat >"$dir/env.tmp" <<EOF
S3_ENDPOINT=$endpoint
AWS_ACCESS_KEY_ID=$access_key
AWS_SECRET_ACCESS_KEY=$secret_key
AWS_REGION=us-east-1
EOF
  chmod 0600 "$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"

  step="waiting for a signed request to work"
  step_logs=("$dir/log/signed.log" "$dir/log/client.rgw.gw.log")
  deadline=$((SECONDS + 30))
  local rc
  while :; do
    rc=0
    signed_request_works "$dir" >"$dir/log/signed.log" 2>&1 || rc=$?
    ((rc != 0)) || break
    ((rc == 75)) || fail "$step: the check itself failed"
    alive rgw || fail "radosgw exited"
    ((SECONDS < deadline)) || fail "$step: still failing after 30 s"
    sleep 0.1
  done

  if [[ -n ${RGW_OWNER_PID:-} ]]; then
    [[ $RGW_OWNER_PID =~ ^[0-9]+$ ]] || fail "RGW_OWNER_PID is not a pid: $RGW_OWNER_PID"
    "$BASH" "$script" _watch "$dir" "$RGW_OWNER_PID" </dev/null >/dev/null 2>&1 &
    echo "watch $!" >>"$dir/pids"
  fi
  trap - EXIT INT TERM HUP
  echo "$me: started in $((SECONDS - started)) s in $dir" >"$dir/log/started"
  echo "$endpoint"
}

cmd_stop() {
  dir=$(abs_dir "${1:-}")
  local keep=${2:-}
  [[ -z $keep || $keep == --keep ]] || usage
  [[ -d $dir ]] || return 0
  stop_daemons "$dir"
  if [[ -z $keep ]]; then
    rm -rf -- "$dir"
  fi
}

cmd_status() {
  dir=$(abs_dir "${1:-}")
  signed_request_works "$dir" >/dev/null 2>&1
}

# rgw.sh _watch DIR PID: stops DIR's daemons, keeping DIR, once PID is gone.
cmd_watch() {
  local d=$1 owner=$2
  trap 'exit 0' TERM
  while [[ -d /proc/$owner && -f $d/pids ]]; do
    sleep 1 &
    wait $! || true
  done
  [[ -f $d/pids ]] || exit 0
  # Not this watcher itself: it is leaving anyway.
  grep -v "^watch " "$d/pids" >"$d/pids.watch" || true
  mv "$d/pids.watch" "$d/pids"
  stop_daemons "$d"
  echo "$me: the owner (pid $owner) is gone; the daemons were stopped" >>"$d/log/watch.log"
}

case ${1:-} in
  start) [[ $# -eq 2 ]] || usage; cmd_start "$2" ;;
  stop) [[ $# -eq 2 || $# -eq 3 ]] || usage; cmd_stop "$2" "${3:-}" ;;
  status) [[ $# -eq 2 ]] || usage; cmd_status "$2" ;;
  _watch) [[ $# -eq 3 ]] || usage; cmd_watch "$2" "$3" ;;
  *) usage ;;
esac
