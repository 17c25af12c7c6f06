// The smallest program build.sh can build: tests/controlplane/test_build_script.py runs
// build.sh on an empty cache with MIG_SPAWNER_BUILD_ONLY=selftest to check a first run.
package main

import "os"

func main() { os.Stdout.WriteString("build.sh selftest\n") }
