#!/usr/bin/env bash
# Install what the localhost SLURM cluster needs (Debian/Ubuntu packages), when absent.
# Exit 0: everything present; exit 77: cannot install here (not root / no apt-get), said on stderr.
set -euo pipefail
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
missing=()
for cmd in slurmctld:slurm-wlm slurmd:slurm-wlm sbatch:slurm-wlm slurmdbd:slurmdbd \
           munged:munge mariadbd:mariadb-server mariadb-install-db:mariadb-server; do
    command -v "${cmd%%:*}" >/dev/null 2>&1 || missing+=("${cmd#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "cluster tier: ${missing[*]} missing and not root: cannot apt-get install them; skipped" >&2
    exit 77
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "cluster tier: ${missing[*]} missing and no apt-get here: install ${PACKAGES[*]} by hand; skipped" >&2
    exit 77
fi
echo "cluster tier: installing ${PACKAGES[*]} with apt-get" >&2
# No service may start during the install (no init system in CI containers; the tier starts its
# own daemons): a policy-rc.d that we remove afterwards, unless one was already there.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
fi
trap '[ $own_policy -eq 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
