#!/bin/sh
# Inside a kernel-tier guest (the host's root over 9p under a tmpfs overlay, this kernel under QEMU):
# set the machine up as a user would (scripts/setup-host.sh), then run the tests listed in the job file
# the host wrote to the results share, and leave pytest's junit report and exit code there.
set -u
repo=$1
out=/run/ca-results
uptime_s() { cut -d' ' -f1 /proc/uptime; }
echo "stage2_start=$(uptime_s)" >> "$out/timings.env"

mkdir -p /dev/pts /dev/shm
# devtmpfs lacks the links udev makes on a real system; tests write to /dev/stderr
ln -sfn /proc/self/fd /dev/fd
for i in 0:stdin 1:stdout 2:stderr; do ln -sfn "/proc/self/fd/${i%%:*}" "/dev/${i#*:}"; done
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
hostname "ca-guest-$(uname -r)"
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
uname -r > "$out/release"

cd "$repo" || exit 1
. "$out/job.env"
scripts/setup-host.sh > "$out/setup.log" 2>&1
echo "setup_rc=$?" >> "$out/timings.env"
echo "setup_done=$(uptime_s)" >> "$out/timings.env"
.venv/bin/claude-audit doctor > "$out/doctor.log" 2>&1
echo "doctor_rc=$?" >> "$out/timings.env"
echo "doctor_done=$(uptime_s)" >> "$out/timings.env"
# shellcheck disable=SC2086  # the job's test list is a word list on purpose
CLAUDE_AUDIT_GUEST_OUT="$out" timeout "$GUEST_TEST_TIMEOUT" .venv/bin/python -m pytest -p no:cacheprovider \
    --durations=0 -o junit_family=xunit1 --junitxml="$out/junit.xml" $GUEST_TESTS > "$out/pytest.log" 2>&1
echo "$?" > "$out/pytest.rc"
echo "tests_done=$(uptime_s)" >> "$out/timings.env"
