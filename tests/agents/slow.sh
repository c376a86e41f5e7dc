#!/bin/sh
# A teammate that takes a while ($1 seconds), then succeeds.
sleep "${1:-0.5}"
echo "slow work finished"
