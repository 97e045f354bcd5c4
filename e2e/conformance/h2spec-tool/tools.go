//go:build tools

// Package tools pins h2spec and its dependencies for e2e/tools/install.sh, which builds
// github.com/summerwind/h2spec/cmd/h2spec from this module. h2spec v2.2.1 predates Go
// modules (+incompatible, no go.mod of its own), so without this go.mod a plain
// `go install ...@v2.2.1+incompatible` would take whatever its dependencies' newest
// releases are on the day.
package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"
