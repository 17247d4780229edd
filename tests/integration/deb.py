#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
"""The Debian packages, as an operator gets them: dpkg-buildpackage -us -uc
on a copy of the tree, lintian without errors, then both packages installed
on this machine: the user, directories, man pages, completion, the unit
(systemd-analyze verify; security score at most 3.0), `wggwd plugins` from
the installed directory, and the demo against the installed binary. The
packages are purged at the end. Needs root, debhelper and lintian (installed
when missing); takes a few minutes: not in the default tests/run
(tests/run deb). WGGWD_DEB_KEEP=1 keeps the installed packages."""
import atexit
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from tap import ROOT, done, ok, skip  # noqa: E402


def sh(cmd, timeout=1200, **kw):
    p = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True,
                       timeout=timeout, **kw)
    return p.returncode, p.stdout + p.stderr


if os.geteuid() != 0:
    skip("Debian packages", "needs root (dpkg -i)")
    done()
need = [p for p in ("debhelper", "lintian", "fakeroot", "bash-completion", "man-db", "systemd")
        if sh(["dpkg-query", "-W", "-f=${Status}", p])[1].find("ok installed") < 0]
if need:
    rc, out = sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *need],
                 env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if rc:
        skip("Debian packages", f"cannot install {need}: {out[-300:]}")
        done()

version = re.search(r"^wggwd \(([^)]+)\)", open(os.path.join(ROOT, "debian/changelog")).read()).group(1)
work = tempfile.mkdtemp(prefix="wggwd-deb-")
atexit.register(shutil.rmtree, work, True)
src = os.path.join(work, f"wggwd-{version}")
rc, files = sh(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard"])
for f in files.splitlines():
    if f.startswith("build") or f.startswith(".") or not os.path.isfile(os.path.join(ROOT, f)):
        continue
    os.makedirs(os.path.join(src, os.path.dirname(f)), exist_ok=True)
    shutil.copy2(os.path.join(ROOT, f), os.path.join(src, f))

# 1. build
rc, out = sh(["dpkg-buildpackage", "-us", "-uc"], cwd=src, timeout=1800,
             env=dict(os.environ, DEB_BUILD_OPTIONS="parallel=2"))
debs = sorted(d for d in glob.glob(f"{work}/*.deb") if "-dbgsym_" not in d)
names = sorted(os.path.basename(d).split("_")[0] for d in debs)
ok(rc == 0 and names == ["wggwd", "wggwd-dev"], f"dpkg-buildpackage -us -uc builds {names}", out[-3000:])
if rc:
    done()
rc, contents = sh(["dpkg-deb", "-c", [d for d in debs if "/wggwd_" in d][0]])
want = ["./usr/bin/wggwd", "/wggwd/plugins/installer-netlink.so", "./lib/systemd/system/wggwd.service",
        "./usr/lib/sysusers.d/wggwd.conf", "./usr/lib/tmpfiles.d/wggwd.conf",
        "./usr/share/man/man8/wggwd.8.gz", "./usr/share/man/man5/wggwd.yaml.5.gz",
        "./usr/share/man/man8/wggwd-ctl.8.gz", "./usr/share/bash-completion/completions/wggwd",
        "./usr/share/doc/wggwd/examples/pull.yaml"]
ok(all(w in contents for w in want), "wggwd has the daemon, plugins, unit, sysusers, tmpfiles, "
   "man pages, completion and examples", [w for w in want if w not in contents])
rc, dev = sh(["dpkg-deb", "-c", [d for d in debs if "/wggwd-dev_" in d][0]])
ok("./usr/include/wggwd/plugin.h" in dev and "pkgconfig/wggwd-plugin.pc" in dev,
   "wggwd-dev has plugin.h and wggwd-plugin.pc", dev)

# 2. lintian
changes = glob.glob(f"{work}/*.changes")
rc, out = sh(["lintian", "--tag-display-limit", "0", "--display-info", *changes], timeout=900)
errors = [x for x in out.splitlines() if x.startswith("E:")]
tags = [x for x in out.splitlines() if re.match(r"^[EWIPX]: ", x)]
ok(not errors, f"lintian: no errors ({len(tags)} warnings and notes)", out)
print("# " + "\n# ".join(out.splitlines()[:40]))

# 3. install
rc, out = sh(["dpkg", "-i", *debs], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
ok(rc == 0, "dpkg -i installs both", out[-2000:])
rc, out = sh("getent passwd wggwd && stat -c '%U %a %n' /var/lib/wggwd /run/wggwd /etc/wggwd")
ok(rc == 0 and "wggwd 700 /var/lib/wggwd" in out and "root 750 /etc/wggwd" in out,
   "the wggwd user (sysusers.d) and its directories (tmpfiles.d)", out)
rc, out = sh(["/usr/bin/wggwd", "plugins"])
ok(rc == 0 and re.search(r"installed plugins: /usr/lib/[^ ]+/wggwd/plugins", out)
   and "installer-netlink" in out and "search path:" in out and "/usr/local" not in out,
   "the installed wggwd finds its plugins in the installed directory", out)
rc, out = sh("/usr/bin/wggwd --help")
ok(re.search(r"then /usr/lib/[^ ]+/wggwd/plugins\.", out), "--help names the installed directory", out)
rc, out = sh("man -w wggwd wggwd.yaml wggwd-ctl && MANWIDTH=80 man -P cat wggwd.yaml 2>&1")
ok(rc == 0 and "installer-netlink" in out and "CORE OPTIONS" in out and "stats_interval" in out,
   "man wggwd, wggwd.yaml (with every plugin's options), wggwd-ctl", out[-1500:])
rc, out = sh("bash -c 'source /usr/share/bash-completion/completions/wggwd; COMP_WORDS=(wggwd plugins inst); "
             "COMP_CWORD=2; _wggwd; printf \"%s\\n\" \"${COMPREPLY[@]}\"'")
ok("installer-netlink" in out and "installer-uapi" in out, "bash completion: plugin names", out)
unit = "/lib/systemd/system/wggwd.service"
rc, out = sh(["systemd-analyze", "verify", unit])
ok(rc == 0 and not out.strip(), "systemd-analyze verify passes", out)
rc, out = sh(["systemd-analyze", "security", "--offline=true", "--no-pager", unit])
m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", out)
ok(m and float(m.group(1)) <= 3.0, f"systemd-analyze security: {m.group(0) if m else '?'}", out[-1500:])
rc, out = sh(["grep", "-E", "^(Type|ExecReload|ExecStartPre|User|WatchdogSec)=", unit])
ok("Type=notify" in out and "ExecReload=/usr/bin/wggwd ctl reload" in out
   and "ExecStartPre=/usr/bin/wggwd check" in out and "User=wggwd" in out,
   "the unit: Type=notify, a check before start, a synchronous reload, its own user", out)

# 4. the demo, against the installed binary and plugins
rc, out = sh(["python3", os.path.join(ROOT, "tools", "demo.py")], timeout=600,
             env=dict(os.environ, WGGWD_BUILD="/usr/bin"), cwd=ROOT)
ok(rc == 0, "the demo runs against /usr/bin/wggwd and the installed plugins", out[-3000:])

if os.environ.get("WGGWD_DEB_KEEP") != "1":
    rc, out = sh(["dpkg", "-P", "wggwd-dbgsym", "wggwd-dev", "wggwd"])
    ok(rc == 0 and not os.path.exists("/usr/bin/wggwd"), "dpkg -P removes them", out[-1000:])
done()
