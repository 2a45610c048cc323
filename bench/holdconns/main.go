// Command holdconns opens n keep-alive connections to a server, sends one
// GET on each and reads the whole answer, then holds them all open and idle
// for a while, then closes them and exits. It measures what a proxy costs
// per open client connection, which wrk cannot (wrk keeps every connection
// busy).
//
//	holdconns -url http://127.0.0.1:8080/dataset/ -n 1000 -hold 10s
//
// It prints "opened N, answered M, held for D" and exits non-zero if a
// connection failed.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"
)

func main() {
	target := flag.String("url", "", "URL to GET on every connection (required)")
	n := flag.Int("n", 1000, "connections to open")
	workers := flag.Int("workers", 32, "connections opened at a time")
	hold := flag.Duration("hold", 10*time.Second, "how long to hold the connections open and idle")
	ready := flag.String("ready", "", "file to create once every connection is open and answered")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || u.Host == "" {
		fmt.Fprintf(os.Stderr, "holdconns: -url %q: want http://host:port/path\n", *target)
		os.Exit(2)
	}
	conns := make([]net.Conn, *n)
	errs := make([]error, *n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				conns[i], errs[i] = get(u)
			}
		}()
	}
	for i := range *n {
		next <- i
	}
	close(next)
	wg.Wait()
	answered := 0
	for i, err := range errs {
		if err == nil {
			answered++
		} else if answered == i { // report the first failure
			fmt.Fprintln(os.Stderr, "holdconns:", err)
		}
	}
	if *ready != "" {
		os.WriteFile(*ready, nil, 0o644)
	}
	time.Sleep(*hold)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	fmt.Printf("opened %d, answered %d, held for %s\n", *n, answered, *hold)
	if answered != *n {
		os.Exit(1)
	}
}

// get dials, sends one keep-alive GET and reads the answer to the end; the
// connection stays open.
func get(u *url.URL) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: holdconns\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		c.Close()
		return nil, fmt.Errorf("GET %s: status %d, close %v, %v", u, resp.StatusCode, resp.Close, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
