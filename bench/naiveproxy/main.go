// Command naiveproxy is the benchmark's naive Go baseline: an
// httputil.NewSingleHostReverseProxy with every default (its Transport is
// http.DefaultTransport, an http.Server with no settings), and nothing else.
//
//	naiveproxy -listen 127.0.0.1:8081 -upstream http://127.0.0.1:8080
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "upstream URL (required)")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatalf("naiveproxy: -upstream %q: want http://host:port", *upstream)
	}
	log.Fatal(http.ListenAndServe(*listen, httputil.NewSingleHostReverseProxy(target)))
}
