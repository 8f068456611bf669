#!/bin/sh
# The image's entry point (/usr/local/bin/tinykv-entrypoint).
#
# No arguments, or flags only: runs the node, `tinykv-node [FLAGS]`, as
# docker-compose.yml and `docker run tinykv --help` expect.
# A program first: runs that program instead, e.g.
#     docker run --rm --network tinykv-net tinykv tinykv_client tinykv-node1:50051 get my_key
# including the original C++ TinyKV's documented form, whose paths name the
# same programs here (they live in /usr/local/bin):
#     docker run -it --rm --network tinykv-net tinykv ./build/src/tinykv_client tinykv-node1:50051 put my_key my_data 3
set -e
case "${1:-}" in
  "" | -*) exec tinykv-node "$@" ;;
esac
prog="$1"
shift
case "$prog" in
  */*) [ -x "$prog" ] || prog="$(basename "$prog")" ;;
esac
exec "$prog" "$@"
