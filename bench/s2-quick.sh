#!/bin/bash
PY=${PYTHON:-python}
wait_port() { for i in $(seq 100); do $PY -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return; sleep 0.1; done; }
run() {
  name=$1; port=$2; url=$3; shift 3
  taskset -c 0 "$@" > /dev/null 2>&1 &
  pid=$!
  wait_port $port
  printf "%-16s " $name
  taskset -c 1 $PY bench/load.py $url --connections 64 --processes 1 --seconds 5 $LOADARGS
  kill $pid; wait $pid 2>/dev/null
}
run wsecho 9101 ws://127.0.0.1:9101/socket ${TWISTD:-twistd} -n --pidfile= wsecho --port 9101
run wsecho-nometr 9102 ws://127.0.0.1:9102/socket ${TWISTD:-twistd} -n --pidfile= wsecho --port 9102 --no-metrics
run naive-autobahn 9103 ws://127.0.0.1:9103/ $PY bench/peers/naive_autobahn.py 9103
run websockets 9104 ws://127.0.0.1:9104/ $PY bench/peers/websockets_echo.py 9104
run picows 9105 ws://127.0.0.1:9105/ $PY bench/peers/picows_echo.py 9105
run gorilla 9106 ws://127.0.0.1:9106/socket env GOMAXPROCS=1 ${GORILLA:-./gorilla-echo} -listen 127.0.0.1:9106
run raw-twisted 9107 tcp://127.0.0.1:9107 $PY bench/peers/raw_twisted.py 9107
