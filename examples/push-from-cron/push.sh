#!/bin/sh
# Announces a message in a demo chat room from outside any request: one POST /push.
# usage: push.sh ROOM TEXT   (env: MUX_PUSH_URL, default http://127.0.0.1:8081/push; MUX_PUSH_SECRET)
set -eu
room=$1
text=$2
url=${MUX_PUSH_URL:-http://127.0.0.1:8081/push}
# The part's body is one SSE event, as the demo page expects; JSON-escape the text minimally.
json_text=$(printf '%s' "$text" | sed 's/\\/\\\\/g; s/"/\\"/g')
printf -- '--CRON\r\nMultiplex-Channel: room-%s\r\n\r\nevent: message\ndata: {"nick":"cron","text":"%s","at":%s000}\n\n\r\n--CRON--\r\n' \
  "$room" "$json_text" "$(date +%s)" |
  curl --silent --show-error --fail-with-body --data-binary @- \
    -H 'Content-Type: application/x-multiplex; boundary=CRON' \
    ${MUX_PUSH_SECRET:+-H "Authorization: Bearer $MUX_PUSH_SECRET"} \
    "$url"
echo
