#!/bin/sh
# ANSIBLE_VAULT_PASSWORD_FILE of the production scenario (molecule.yml): prints the password of the
# vault prepare.yml generates (group_vars/vps/vault.yml), made at random on first use and kept in
# the scenario's ephemeral directory. Ansible reads it when it starts, before prepare has run.
set -eu
file="${MOLECULE_EPHEMERAL_DIRECTORY:?run through molecule}/vault-password"
if [ ! -s "$file" ]; then
  umask 077
  head -c 32 /dev/urandom | base64 >"$file.tmp"
  mv "$file.tmp" "$file"
fi
cat "$file"
