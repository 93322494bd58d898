#!/bin/sh
# A fileferry before_reply upload hook: scan the file before the client hears 226.
#
#   [[hook]]
#   name = "virus-scan"
#   on = ["upload"]
#   command = ["/etc/fileferry/scan_upload.sh"]
#   before_reply = true
#   timeout = 120
#
# Exit 0 accepts the upload. Any other status (or the timeout) refuses it:
# fileferry removes the file and answers 550 with the first line printed
# here. clamdscan exits 1 when it found something, 2 on its own errors.
file="$FILEFERRY_EVENT_LOCAL_PATH"
[ -n "$file" ] || { echo "Upload refused: no local file to scan."; exit 2; }
report=$(clamdscan --no-summary --fdpass -- "$file" 2>&1)
case $? in
  0) exit 0 ;;
  1) echo "Upload refused: virus found (${report##*: })"; exit 1 ;;
  *) echo "Upload refused: the virus scanner is unavailable; try again later."; exit 2 ;;
esac
