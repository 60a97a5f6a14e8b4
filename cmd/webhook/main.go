// Command nsprov is the nsprov binary: the admission webhooks and controller
// (`nsprov serve`) and the policy tools (`nsprov policy eval`, `nsprov policy test`).
package main

import (
	"os"

	"github.com/nsprov/nsprov/cmd/webhook/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
