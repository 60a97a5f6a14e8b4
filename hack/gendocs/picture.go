package gendocs

import (
	"fmt"
	"regexp"
	"strings"
)

// An Edge is one arrow of the package picture: From imports To. Both are
// package paths relative to the module, as the picture labels them.
type Edge struct{ From, To string }

// Picture reads the package picture of a page: the ```mermaid block inside
// the section whose heading line is section. Nodes are declared as
// id["package/path"] (anywhere on a line, also inside an arrow), arrows as
// "a --> b", optionally labelled "a -->|"text"| b" and chained. It returns
// the drawn packages and the arrows, with ids resolved to paths.
func Picture(page, section string) (packages []string, edges []Edge, err error) {
	block, err := mermaidBlock(page, section)
	if err != nil {
		return nil, nil, err
	}
	paths := map[string]string{}
	var arrows [][]string
	for n, line := range block {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "%%") || strings.HasPrefix(line, "flowchart") || strings.HasPrefix(line, "graph") {
			continue
		}
		for _, m := range nodeDecl.FindAllStringSubmatch(line, -1) {
			if old, ok := paths[m[1]]; ok && old != m[2] {
				return nil, nil, fmt.Errorf("picture line %d: node %s is both %q and %q", n+1, m[1], old, m[2])
			}
			if _, ok := paths[m[1]]; !ok {
				packages = append(packages, m[2])
			}
			paths[m[1]] = m[2]
		}
		bare := edgeLabel.ReplaceAllString(nodeDecl.ReplaceAllString(line, "$1"), "")
		ids := strings.Split(bare, "-->")
		for i := range ids {
			ids[i] = strings.TrimSpace(ids[i])
			if !nodeID.MatchString(ids[i]) {
				return nil, nil, fmt.Errorf("picture line %d: cannot read %q (want id[\"path\"] nodes and a --> b arrows)", n+1, line)
			}
		}
		if len(ids) > 1 {
			arrows = append(arrows, ids)
		}
	}
	for _, chain := range arrows {
		for i := 0; i+1 < len(chain); i++ {
			from, ok1 := paths[chain[i]]
			to, ok2 := paths[chain[i+1]]
			if !ok1 || !ok2 {
				return nil, nil, fmt.Errorf("picture: arrow %s --> %s uses a node that is not declared as id[\"path\"]", chain[i], chain[i+1])
			}
			edges = append(edges, Edge{From: from, To: to})
		}
	}
	if len(edges) == 0 {
		return nil, nil, fmt.Errorf("the picture in %q has no arrows", section)
	}
	return packages, edges, nil
}

var (
	nodeDecl  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\["([^"]+)"\]`)
	edgeLabel = regexp.MustCompile(`\|"[^"]*"\||\|[^|"]*\|`)
	nodeID    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// mermaidBlock returns the lines of the first ```mermaid block of a section.
func mermaidBlock(page, section string) ([]string, error) {
	lines := strings.Split(page, "\n")
	level := len(section) - len(strings.TrimLeft(section, "#"))
	in, inBlock, inOther := false, false, false
	var block []string
	for _, l := range lines {
		fence := strings.HasPrefix(strings.TrimSpace(l), "```")
		switch {
		case !in:
			in = strings.TrimSpace(l) == section
		case inBlock && strings.TrimSpace(l) == "```":
			return block, nil
		case inBlock:
			block = append(block, l)
		case inOther:
			inOther = !fence
		case strings.TrimSpace(l) == "```mermaid":
			inBlock = true
		case fence:
			inOther = true
		case strings.HasPrefix(l, "#"):
			if n := len(l) - len(strings.TrimLeft(l, "#")); n <= level && strings.HasPrefix(l[n:], " ") {
				return nil, fmt.Errorf("the section %q has no ```mermaid block", section)
			}
		}
	}
	if !in {
		return nil, fmt.Errorf("no %q section", section)
	}
	if inBlock {
		return nil, fmt.Errorf("the ```mermaid block in %q is not closed", section)
	}
	return nil, fmt.Errorf("the section %q has no ```mermaid block", section)
}
