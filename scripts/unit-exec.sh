#!/usr/bin/env bash
# Runs one command line of a systemd service unit the way systemd would,
# for tests on machines where systemd is not running (containers, CI):
#
#   scripts/unit-exec.sh [--provide /usr/bin/ipn=FILE] UNIT-FILE INSTANCE KEY
#                                               (KEY: ExecStart, ExecStop, ...)
#
# --provide puts FILE at that path inside the sandbox only (a read-only
# overlay on its directory), to test a build before it is installed.
#
# What it reproduces, from the unit's [Service] section:
#   - %i (the instance), %% in every value;
#   - Environment=, then EnvironmentFile= (whose values override; a leading
#     - makes a missing file fine): VAR=value lines, # comments, values
#     optionally in double or single quotes;
#   - in the command line, $VAR becomes the value split into words and
#     ${VAR} the value as one word (a word holding other text as well keeps
#     ${VAR} in place); a leading - on the line is honoured as systemd does
#     (the failure is ignored);
#   - CapabilityBoundingSet= (the process keeps only those capabilities:
#     the bounding set, with no inheritable or ambient ones) and
#     NoNewPrivileges=;
#   - ProtectSystem=strict with ReadWritePaths= (the whole file system
#     read-only, but /dev, /proc, /sys and those paths) and PrivateTmp=
#     (empty /tmp and /var/tmp), in a mount namespace of its own.
# What it does not: the rest of systemd's sandboxing (system call filters,
# device policy, namespaces), Type=, Restart=. It refuses a unit using a
# specifier or a quoting it does not reproduce, rather than guess.
#
# Needs root (mount namespace, capabilities), util-linux (unshare, setpriv).
set -euo pipefail

die() { printf 'unit-exec: %s\n' "$*" >&2; exit 1; }
provide_at="" provide_file=""
if [ "${1:-}" = --provide ]; then
  provide_at=${2%%=*} provide_file=${2#*=}
  [ -f "$provide_file" ] || die "--provide: no file $provide_file"
  shift 2
fi
[ $# -eq 3 ] || die "usage: unit-exec.sh [--provide PATH=FILE] UNIT-FILE INSTANCE KEY"
unit=$1 instance=$2 key=$3
[ -f "$unit" ] || die "no unit file $unit"

# The [Service] section's KEY=VALUE lines, %i and %% replaced.
service_lines() {
  awk '/^\[/{s=($0=="[Service]")} s && /^[A-Za-z]+=/' "$unit" | while IFS= read -r line; do
    case "$line" in
      *%[!i%]*) die "$unit: '$line' uses a specifier this script does not reproduce" ;;
    esac
    line=${line//%i/$instance}
    printf '%s\n' "${line//%%/%}"
  done
}
values() { service_lines | sed -n "s/^$1=//p"; }

declare -A env=()
strip_quotes() {
  local v=$1
  if [[ $v == \"*\" || $v == \'*\' ]]; then v=${v:1:${#v}-2}; fi
  printf '%s' "$v"
}
while IFS= read -r assignment; do
  for word in $assignment; do # Environment=A=1 B=2: words
    env[${word%%=*}]=$(strip_quotes "${word#*=}")
  done
done < <(values Environment)
while IFS= read -r file; do
  optional=0
  if [[ $file == -* ]]; then optional=1; file=${file#-}; fi
  if [ ! -f "$file" ]; then
    [ "$optional" = 1 ] && continue
    die "EnvironmentFile $file is missing: systemd would not start the unit"
  fi
  while IFS= read -r line || [ -n "$line" ]; do
    [[ $line =~ ^[[:space:]]*(#|;|$) ]] && continue
    [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] \
      || die "$file: '$line' is not VAR=value"
    env[${BASH_REMATCH[1]}]=$(strip_quotes "${BASH_REMATCH[2]}")
  done <"$file"
done < <(values EnvironmentFile)

command_line=$(values "$key")
[ -n "$command_line" ] || die "$unit has no $key="
[ "$(printf '%s\n' "$command_line" | wc -l)" -eq 1 ] || die "$unit has several $key= lines"
ignore_failure=0
if [[ $command_line == -* ]]; then ignore_failure=1; command_line=${command_line#-}; fi
[[ $command_line != *[\"\'\\]* ]] || die "$unit: $key quotes or escapes words; this script does not reproduce that"

argv=()
set -f # no globbing of words
for word in $command_line; do
  if [[ $word =~ ^\$([A-Za-z_][A-Za-z0-9_]*)$ ]]; then
    # shellcheck disable=SC2206  # split into words, as systemd does
    argv+=(${env[${BASH_REMATCH[1]}]:-})
  else
    while [[ $word =~ \$\{([A-Za-z_][A-Za-z0-9_]*)\} ]]; do
      word=${word//"${BASH_REMATCH[0]}"/${env[${BASH_REMATCH[1]}]:-}}
    done
    argv+=("$word")
  fi
done
set +f

# Capabilities (setpriv's names are lower case, without CAP_). An empty
# CapabilityBoundingSet= leaves none; no such line leaves them all.
setpriv=(setpriv)
if service_lines | grep -c '^CapabilityBoundingSet=' >/dev/null; then
  bounding=-all
  for cap in $(values CapabilityBoundingSet | tail -n 1); do
    cap=${cap#CAP_}
    bounding+=",+${cap,,}"
  done
  setpriv+=(--bounding-set "$bounding" --inh-caps -all --ambient-caps -all)
fi
[ "$(values NoNewPrivileges | tail -n 1)" != yes ] || setpriv+=(--no-new-privs)

protect=$(values ProtectSystem | tail -n 1)
private_tmp=$(values PrivateTmp | tail -n 1)
read_write=()
while IFS= read -r paths; do
  for p in $paths; do
    p=${p#-} # missing: ignored, as systemd does
    [ -e "$p" ] && read_write+=("$p")
  done
done < <(values ReadWritePaths)
case "$protect" in
  strict|"") ;;
  *) die "$unit: ProtectSystem=$protect is not reproduced (only strict)" ;;
esac

# In a mount namespace of its own: the read-write paths become mounts of
# their own, every other mount is made read-only, /tmp is emptied; then the
# command runs with the unit's capabilities.
sandbox='
  set -e
  protect=$1 private_tmp=$2 provide_at=$3 provide_file=$4 n=$5; shift 5
  rw=("${@:1:n}"); shift "$n"
  if [ -n "$provide_at" ]; then
    extra=$(mktemp -d)
    cp "$provide_file" "$extra/${provide_at##*/}"
    mount -t overlay overlay -o "lowerdir=$extra:${provide_at%/*}" "${provide_at%/*}"
  fi
  for p in "${rw[@]}"; do mount --bind "$p" "$p"; done
  if [ "$protect" = strict ]; then
    while read -r _ mountpoint _; do
      mountpoint=$(printf "%b" "$mountpoint")
      case "$mountpoint" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue ;; esac
      skip=0
      for p in "${rw[@]}"; do [ "$mountpoint" = "$p" ] && skip=1; done
      [ "$skip" = 1 ] || mount -o remount,bind,ro "$mountpoint" 2>/dev/null || true
    done < /proc/self/mounts
    ! touch /usr/.unit-exec-probe 2>/dev/null || { echo "unit-exec: / is still writable" >&2; exit 1; }
  fi
  if [ "$private_tmp" = yes ]; then
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mount -t tmpfs -o mode=1777 tmpfs /var/tmp
  fi
  exec "$@"
'
run=(unshare --mount --propagation private -- bash -c "$sandbox" sandbox
  "$protect" "$private_tmp" "$provide_at" "$provide_file" "${#read_write[@]}" "${read_write[@]}"
  "${setpriv[@]}" -- "${argv[@]}")
if [ "$ignore_failure" = 1 ]; then
  "${run[@]}" || true
  exit 0
fi
# The same process all the way to the command (unshare, bash and setpriv
# exec), so that a signal sent to this script's pid reaches it, as
# systemd's reach a unit's main process.
exec "${run[@]}"
