#!/bin/busybox sh
# /init of the kernel tier's initramfs: load the modules that reach the host's root over virtio-9p, put
# a tmpfs overlay on it (the guest writes nothing back to the host), mount the results share, and hand
# over to tests/kernels/guest/stage2.sh of the checkout named by ca_repo= on the kernel command line.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "ca-init: $(cut -d' ' -f1 /proc/uptime)s after boot" > /dev/console

fail() {
    echo "ca-init: $*" > /dev/console
    poweroff -f
}

# Which module needs which differs between kernel builds (some are built in): load in passes until no
# pass makes progress.
todo=$(cat /modules.order)
for pass in 1 2 3 4 5 6; do
    left=""
    for m in $todo; do
        insmod "/modules/$m.ko" 2>/dev/null || left="$left $m"
    done
    [ -z "$left" ] && break
    todo=$left
done
for m in $left; do
    # a module that is built into this kernel fails to load as a module, which is fine
    grep -q "/$m.ko" "/modules.builtin" 2>/dev/null || echo "ca-init: module $m not loaded" > /dev/console
done

mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /host || fail "cannot mount hostroot"
mount -t tmpfs -o size=75% tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "cannot mount overlay"
for d in run tmp; do mount -t tmpfs -o mode=1777 tmpfs /newroot/$d; done
mkdir -p /newroot/run/ca-results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 results /newroot/run/ca-results || fail "cannot mount results"

repo=$(sed -n 's/.*ca_repo=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$repo" ] || fail "no ca_repo= on the kernel command line"
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /usr/bin/python3 "$repo/tests/kernels/guest/pid1.py" "$repo"
