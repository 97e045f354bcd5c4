// Command etcd is the upstream etcd server, built from the published
// go.etcd.io/etcd/server/v3 module (see ../../README.md for versions).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
