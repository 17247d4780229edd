#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (C) 2026 wggwd authors
# meson install script: wggwd.yaml(5) from its template, with the options
# of the core and of every plugin built beside the binary, from their
# option tables (wggwd plugins --man).
#   gen-yaml5.sh TEMPLATE WGGWD MANDIR   (MANDIR relative to the prefix)
set -eu
tmpl=$1 wggwd=$2 mandir=$3
case $wggwd in */*) ;; *) wggwd=${MESON_BUILD_ROOT:-.}/$wggwd ;; esac
case $mandir in /*) ;; *) mandir=${MESON_INSTALL_DESTDIR_PREFIX:-/usr/local}/$mandir ;; esac
case $mandir in /*) ;; *) mandir=/$mandir ;; esac
out=$mandir/man5/wggwd.yaml.5
mkdir -p "$mandir/man5"
# (through the environment: awk -v would read backslashes as escapes)
GEN=$(env -u WGGWD_PLUGIN_PATH "$wggwd" plugins --man) || exit 1
export GEN
awk '$0 == "@GENERATED@" { print ENVIRON["GEN"]; next } { print }' "$tmpl" >"$out"
chmod 644 "$out"
echo "Generating $out"
