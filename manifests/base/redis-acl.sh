#!/bin/sh
# redis-acl.sh USERS OUT: the Redis ACL file OUT from USERS (one `user rules` line each,
# redis-users.acl): each user on with the SHA-256 of its password, read from the variable
# <USER>_PASSWORD (lock-keeper: LOCK_KEEPER_PASSWORD; the pods set them from the Secret
# kubescaler-redis, key = the user's name), and `default` off. A user without a password is
# left out (nobody can log in as it) and said so. OUT holds hashes only, never a password.
set -eu
umask 077
{
  # default: off (nobody logs in as it) but with every permission, as redis_acl.DEFAULT_OFF
  # says why: Redis replays the AOF's transactions as `default` and re-checks its ACL at EXEC
  echo "user default off resetpass ~* &* +@all"
  while read -r name rules; do
    case "$name" in "" | "#"*) continue ;; esac
    var="$(echo "$name" | tr 'a-z-' 'A-Z_')_PASSWORD"
    eval "password=\${$var:-}"
    if [ -z "$password" ]; then
      echo "redis-acl: user $name left out: no $var (key $name of the Secret kubescaler-redis)" >&2
      continue
    fi
    echo "user $name on #$(printf %s "$password" | sha256sum | cut -d' ' -f1) $rules"
  done < "$1"
} > "$2"
