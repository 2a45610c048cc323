// Command discard is the upload benchmark's upstream: it reads every request
// body to the end, throws it away, and answers with the byte count as JSON,
// so the script can check that the whole upload went through the gate.
//
//	discard -listen 127.0.0.1:8082
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, fmt.Sprintf(`{"success": false, "read": %d, "error": %q}`, n, err.Error()), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"success": true, "read": %d}`+"\n", n)
	})))
}
