#!/bin/sh
# A teammate that fails: a progress line, then an error line whose numbers,
# paths and ids differ between teammates, and exit 3.
echo "starting work for $RALLY_TEAMMATE"
echo "Error: cannot reach model server http://127.0.0.1:$$/v1 (request 0x$$beef) for $RALLY_TEAMMATE while writing $PWD/out.txt: connection refused" >&2
exit 3
