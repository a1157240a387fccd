#!/bin/sh
# What many init containers do today: trade the projected token for
# credentials with the aws CLI, then one `get-secret-value` per secret, each a
# fresh CLI process, each value written to <outDir>/<basename of the id>.
# (`--output text` appends a newline: the bytes differ from the value by that.)
#
#   AWS_CLI=/path/to/aws sh test/bench/aws-cli-init.sh <outDir> <secretId>...
set -eu
aws=${AWS_CLI:-aws}
out=$1
shift
creds=$("$aws" sts assume-role-with-web-identity \
  --role-arn "$AWS_ROLE_ARN" \
  --role-session-name init \
  --web-identity-token "$(cat "$AWS_WEB_IDENTITY_TOKEN_FILE")" \
  --query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]' \
  --output text)
AWS_ACCESS_KEY_ID=$(printf '%s' "$creds" | cut -f1)
AWS_SECRET_ACCESS_KEY=$(printf '%s' "$creds" | cut -f2)
AWS_SESSION_TOKEN=$(printf '%s' "$creds" | cut -f3)
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
unset AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE
for id in "$@"; do
  "$aws" secretsmanager get-secret-value --secret-id "$id" --query SecretString --output text > "$out/$(basename "$id")"
done
