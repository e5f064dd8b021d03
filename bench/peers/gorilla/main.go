// The seed's Go echo server (gorilla/websocket), as the write-up has it,
// with the address from the command line and compression as a flag. Built offline from Debian's
// golang-go and golang-github-gorilla-websocket-dev (see bench/README).
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4196,
	WriteBufferSize: 1124,
	CheckOrigin:     func(r *http.Request) bool { return true },
}

func serveHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		log.Println("Error during connection upgrade:", err)
		return
	}
	defer conn.Close()
	for {
		messageType, message, err := conn.ReadMessage()
		if err != nil {
			log.Println("Error during message reading:", err)
			break
		}
		log.Printf("Received:%s", message)
		conn.SetCloseHandler(func(code int, text string) error {
			fmt.Println(code, text)
			return nil
		})
		err = conn.WriteMessage(messageType, message)
		if err != nil {
			log.Println("Error during message writing:", err)
			return
		}
	}
}

func home(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "Index Page")
}

func main() {
	address := flag.String("listen", "localhost:8181", "address to listen on")
	compress := flag.Bool("compress", false, "accept permessage-deflate (the seed's EnableCompression)")
	flag.Parse()
	upgrader.EnableCompression = *compress
	http.HandleFunc("/socket", serveHTTP)
	http.HandleFunc("/", home)
	log.Fatal(http.ListenAndServe(*address, nil))
}
