#!/bin/busybox sh
# /init of the test guest's initramfs (scripts/test-vm.sh builds it): loads
# the modules that reach the host's root and the ext4 scratch disk, mounts
# the root read-only over 9p with a tmpfs overlay on top (a writable /etc:
# useradd, subuid), and runs the lane's guest script there as pid 1.
# With jobrun.root=DIR it boots DIR of the host (a debootstrap root with
# systemd) instead: overlaid the same way, the host's / at /host, the
# guest script as a unit, systemd as pid 1.
# busybox-static is the only program; the modules sit in /mods.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

say() { echo "vm-init: $*" >/dev/console; }
fail() {
	say "$*"
	poweroff -f
}

# Dependencies load in whatever order: retry until every module is in.
# The ones that reach the host's root over 9p, then the scratch disk's
# (virtio_blk, ext4 and crc32c for its metadata checksums), which the
# systemd guest's root has no modules for. test-vm.sh copies this list.
mods="virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay virtio_blk crc16 mbcache jbd2 crc32c_generic ext4"
for try in 1 2 3 4 5 6 7 8 9 10; do
	left=""
	for m in $mods; do
		[ -d "/sys/module/$m" ] && continue
		insmod "/mods/$m.ko" 2>/dev/null || left="$left $m"
	done
	[ -z "$left" ] && break
done
[ -z "$left" ] || fail "modules not loaded:$left"

# The kernel command line carries the guest script and the output dir.
for a in $(cat /proc/cmdline); do
	case $a in
	jobrun.script=*) script=${a#jobrun.script=} ;;
	jobrun.out=*) out=${a#jobrun.out=} ;;
	jobrun.root=*) sysroot=${a#jobrun.root=} ;;
	esac
done
[ -n "$script" ] && [ -n "$out" ] || fail "no jobrun.script= or jobrun.out= on the kernel command line"

mkdir -p /lower /rw /root
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=1048576,cache=loose host /lower || fail "mount the host's / over 9p"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o "lowerdir=/lower$sysroot,upperdir=/rw/upper,workdir=/rw/work" root /root || fail "overlay the host's /$sysroot"
if [ -n "$sysroot" ]; then
	mkdir -p /root/host "/root$out"
	mount --bind /lower /root/host
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 out "/root$out" || fail "mount the output dir"
	unit=/root/etc/systemd/system/lane-guest.service
	cat >"$unit" <<EOT
[Unit]
Description=make test-vm: the systemd guest's checks
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/bash /host$script systemd-guest
StandardOutput=journal+console
StandardError=journal+console
EOT
	mkdir -p /root/etc/systemd/system/multi-user.target.wants
	ln -s ../lane-guest.service /root/etc/systemd/system/multi-user.target.wants/
	umount /proc /sys /dev
	exec switch_root /root /lib/systemd/systemd
fi
for d in proc sys dev run tmp; do
	umount "/$d" 2>/dev/null
done
mount -t proc proc /root/proc
mount -t sysfs sys /root/sys
mount -t devtmpfs dev /root/dev
mkdir -p /root/dev/pts /root/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /root/dev/pts
mount -t tmpfs -o mode=1777 shm /root/dev/shm
mount -t tmpfs -o mode=0755 run /root/run
# A repository under /tmp (a CI clone) would be hidden by the guest's own
# /tmp: carry its view across that tmpfs.
repo=${script%/scripts/*}
case $repo in
/tmp/*)
	mkdir -p /rw/repo
	mount --bind "/root$repo" /rw/repo || fail "keep $repo"
	;;
esac
mount -t tmpfs -o mode=1777 tmp /root/tmp
case $repo in
/tmp/*)
	mkdir -p "/root$repo"
	mount --move /rw/repo "/root$repo" || fail "put $repo back"
	;;
esac
mount -t cgroup2 none /root/sys/fs/cgroup || fail "mount cgroup2"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 out "/root$out" || fail "mount the output dir"
# switch_root, not chroot: the kernel refuses a user namespace to a
# chrooted process (EPERM), and the root moved onto / is also where the
# kernel's helper threads run the host's modprobe over /lib/modules.
exec switch_root /root /bin/bash "$script" guest
