package main

func init() {
	register(&command{
		name:    "gate",
		summary: "run the maintenance-mode proxy in front of one CKAN web node",
		usage: `gate --config gate.toml
The gate listens on 'listen', forwards to CKAN at 'upstream', enforces the
site's mode (live, read-only, down), drains in-flight writes, and serves the
control API under /-/ckanops/. See docs/config.md for gate.toml.`,
		run: func(e *env, args []string) error {
			fs := newFlags(e, commands["gate"])
			fs.String("config", "", "path to gate.toml (required)")
			if err := parse(e, fs, args); err != nil {
				return err
			}
			return notImplemented("the gate", "issue 3")
		},
	})
}
