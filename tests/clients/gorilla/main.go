// The seed's client library (gorilla/websocket) as a test client of wsecho:
// sends text and binary, small and 1 MiB, checks every echo, closes with
// 4000 "bye" and prints the close code and reason the server sent back.
// Built offline from Debian's golang-go and golang-github-gorilla-websocket-dev
// by tests/test_clients.py.
package main

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	url := flag.String("url", "ws://localhost:8181/socket", "where to connect")
	compress := flag.Bool("compress", false, "offer permessage-deflate")
	flag.Parse()

	dialer := websocket.Dialer{EnableCompression: *compress, HandshakeTimeout: 30 * time.Second}
	conn, response, err := dialer.Dial(*url, nil)
	if err != nil {
		fmt.Println("error dial:", err)
		os.Exit(1)
	}
	fmt.Printf("extensions %q\n", response.Header.Get("Sec-WebSocket-Extensions"))
	big := make([]byte, 1<<20)
	rand.Read(big)
	messages := []struct {
		kind int
		data []byte
	}{
		{websocket.TextMessage, []byte("Hello, world!")},
		{websocket.BinaryMessage, []byte{0, 1, 2, 255}},
		{websocket.TextMessage, bytes.Repeat([]byte("\u00e9"), 1<<19)},
		{websocket.BinaryMessage, big},
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i, m := range messages {
		if err := conn.WriteMessage(m.kind, m.data); err != nil {
			fmt.Println("error write:", err)
			os.Exit(1)
		}
		kind, data, err := conn.ReadMessage()
		if err != nil || kind != m.kind || !bytes.Equal(data, m.data) {
			fmt.Printf("error echo %d: type %d, %d bytes, %v\n", i, kind, len(data), err)
			os.Exit(1)
		}
	}
	fmt.Printf("echoed %d\n", len(messages))
	conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"))
	_, _, err = conn.ReadMessage()
	if closed, ok := err.(*websocket.CloseError); ok {
		fmt.Printf("closed %d %s\n", closed.Code, closed.Text)
		return
	}
	fmt.Println("error close:", err)
	os.Exit(1)
}
