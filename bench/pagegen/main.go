// Command pagegen writes the benchmark's upstream files into a directory:
// dataset.html (the ~50 KB CKAN listing page) and package_show.json (CKAN's
// package_show envelope), as package fixture makes them.
//
//	go run ./bench/pagegen -dir /tmp/bench/www
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ckanops/ckanops/bench/fixture"
)

func main() {
	dir := flag.String("dir", "", "directory to write dataset.html and package_show.json into (required)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "pagegen: -dir is required")
		os.Exit(2)
	}
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "pagegen:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	js, err := fixture.PackageShow()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"dataset.html": fixture.Page(), "package_show.json": js} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
		fmt.Printf("%s\t%d bytes\n", name, len(b))
	}
	return nil
}
