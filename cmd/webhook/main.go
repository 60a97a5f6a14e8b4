// Command nsprov is the nsprov binary: the admission webhooks and controller
// (`nsprov serve`), the policy tools (`nsprov policy eval`, `nsprov policy test`)
// and, invoked as kubectl-nsprov, the kubectl plugin for requesters.
package main

import (
	"os"

	"github.com/nsprov/nsprov/cmd/webhook/app"
)

func main() {
	// Installed as kubectl-nsprov, the binary is the kubectl plugin.
	os.Exit(app.MainAs(os.Args[0], os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
