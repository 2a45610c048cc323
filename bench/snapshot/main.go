// Command snapshot runs ckanops' snapshot (runbook/snapshot.Take) once and
// prints its wall time, verdict and file sizes as one JSON line. It is the
// ckanops side of bench/snapshot/run.sh.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/runbook/snapshot"
)

func main() {
	ckanDB := flag.String("ckan-db", "", "CKAN's database URL (postgres://...)")
	dsDB := flag.String("datastore-db", "", "the DataStore's database URL")
	storage := flag.String("storage", "", "CKAN's storage_path")
	dir := flag.String("dir", "", "where the snapshot goes")
	pgDump := flag.String("pg-dump", "pg_dump", "the pg_dump program")
	verbose := flag.Bool("v", false, "print Take's progress lines to stderr, with the elapsed time")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process here")
	flag.Parse()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}

	start := time.Now()
	spec := snapshot.Spec{
		Site:        "bench",
		Dir:         *dir,
		PGDump:      *pgDump,
		CKANDB:      config.SecretURL(*ckanDB),
		DatastoreDB: config.SecretURL(*dsDB),
		StoragePath: *storage,
	}
	if *verbose {
		spec.Output = func(line string) {
			fmt.Fprintf(os.Stderr, "%7.3fs %s\n", time.Since(start).Seconds(), line)
		}
	}
	m, err := snapshot.Take(context.Background(), spec)
	wall := time.Since(start)
	if err != nil {
		fail(err)
	}
	sizes := map[string]int64{}
	for _, f := range m.Files {
		sizes[f.Name] = f.Size
	}
	line, _ := json.Marshal(struct {
		Wall    float64          `json:"wall_s"`
		Verdict string           `json:"verdict"`
		Changed []string         `json:"changed"`
		Sizes   map[string]int64 `json:"sizes"`
		Bytes   int64            `json:"bytes"`
		Dir     string           `json:"dir"`
	}{wall.Seconds(), m.Verdict, m.Changed, sizes, m.Bytes(), m.Dir})
	fmt.Println(string(line))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "snapshot:", err)
	os.Exit(1)
}
