package walkthrough

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// A Part is one section of a page whose console blocks the walkthrough test
// runs. The walkthrough starts in README.md and goes on in the docs/ pages
// that explain each part; the parts run in order in one environment.
type Part struct {
	// File is the page, relative to the repository root.
	File string
	// Section is the heading line of the section, for example "## Walkthrough".
	// The section ends at the next heading of the same or a higher level.
	Section string
	// MinSteps is the fewest commands the section holds; fewer means the
	// section was renamed, cut or not found whole.
	MinSteps int
}

// A Step is one command of the walkthrough and the output the page shows.
type Step struct {
	// Command is the shell command without its "$ " prompt; continuation
	// lines and here-documents are part of it.
	Command string
	// Output is the documented output, one entry per line.
	Output []string
	// Line is the page's line of the command (1-based).
	Line int
	// outStart and outEnd delimit the output lines in the page (0-based,
	// end exclusive), for rewriting.
	outStart, outEnd int
}

var heredoc = regexp.MustCompile(`<<-?\s*'?"?([A-Za-z_]+)'?"?`)

// Parse returns the steps of one section of a page: every "$ command" line
// of the section's ```console blocks and the lines up to the next command or
// the end of the block. section is the heading line, for example
// "## Walkthrough"; the section ends at the next heading of the same or a
// higher level (outside code blocks).
func Parse(page, section string) ([]Step, error) {
	lines := strings.Split(page, "\n")
	level := headingLevel(section)
	if level == 0 {
		return nil, fmt.Errorf("%q is not a markdown heading", section)
	}
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == section {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no %q section", section)
	}
	var steps []Step
	inBlock, inOther := false, false
	for i := start; i < len(lines); i++ {
		l := lines[i]
		if inOther {
			inOther = !strings.HasPrefix(strings.TrimSpace(l), "```")
			continue
		}
		if !inBlock {
			if n := headingLevel(l); n > 0 && n <= level {
				break
			}
			trimmed := strings.TrimSpace(l)
			inBlock = trimmed == "```console"
			inOther = !inBlock && strings.HasPrefix(trimmed, "```")
			continue
		}
		if strings.TrimSpace(l) == "```" {
			inBlock = false
			continue
		}
		if !strings.HasPrefix(l, "$ ") {
			if len(steps) == 0 || steps[len(steps)-1].outEnd != i {
				return nil, fmt.Errorf("line %d: output before any command in a console block", i+1)
			}
			steps[len(steps)-1].Output = append(steps[len(steps)-1].Output, l)
			steps[len(steps)-1].outEnd = i + 1
			continue
		}
		s := Step{Command: strings.TrimPrefix(l, "$ "), Line: i + 1}
		for strings.HasSuffix(s.Command, "\\") && i+1 < len(lines) {
			i++
			s.Command += "\n" + lines[i]
		}
		if m := heredoc.FindStringSubmatch(s.Command); m != nil {
			for i+1 < len(lines) {
				i++
				s.Command += "\n" + lines[i]
				if lines[i] == m[1] {
					break
				}
			}
		}
		s.outStart, s.outEnd = i+1, i+1
		steps = append(steps, s)
	}
	if inBlock {
		return nil, fmt.Errorf("a console block in %q is not closed", section)
	}
	return steps, nil
}

// headingLevel is the level of a markdown heading line ("## x" is 2), or 0
// when the line is not a heading.
func headingLevel(line string) int {
	n := len(line) - len(strings.TrimLeft(line, "#"))
	if n == 0 || n > 6 || !strings.HasPrefix(line[n:], " ") {
		return 0
	}
	return n
}

// Rewrite returns the page with each step's output replaced by outputs[i].
func Rewrite(page string, steps []Step, outputs [][]string) string {
	lines := strings.Split(page, "\n")
	var out []string
	next := 0
	for i, s := range steps {
		out = append(out, lines[next:s.outStart]...)
		out = append(out, outputs[i]...)
		next = s.outEnd
	}
	out = append(out, lines[next:]...)
	return strings.Join(out, "\n")
}

var (
	// age is a kubectl AGE or DURATION column value (5s, 2m, 3m10s, 1h).
	age = regexp.MustCompile(`^\d+(s|m|h|d)(\d+(s|m))?$`)
	// timestamp is an RFC 3339 time.
	timestamp = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`)
	// workflowUID is the part of a workflow name taken from the namespace's UID.
	workflowUID = regexp.MustCompile(`nsprov-[0-9a-f]{12}-`)
	// spaces are runs of blanks between table columns.
	spaces = regexp.MustCompile(`[ \t]+`)
)

// Normalize makes output comparable across runs: ages, timestamps and the UID
// part of workflow names become placeholders, column padding one blank, and trailing blank lines go.
func Normalize(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		l = timestamp.ReplaceAllString(l, "<time>")
		l = workflowUID.ReplaceAllString(l, "nsprov-<uid>-")
		fields := strings.Fields(l)
		for i, f := range fields {
			if age.MatchString(f) {
				fields[i] = "<age>"
			}
		}
		l = spaces.ReplaceAllString(strings.Join(fields, " "), " ")
		out = append(out, l)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	sortStepRows(out)
	return out
}

// sortStepRows sorts, in place, the rows of every steps table of `kubectl
// nsprov status` (the lines after its "STEP STATE ..." header, up to a blank
// line): status lists steps in the order they started, and steps that start
// in the same second or two come in either order from run to run.
func sortStepRows(lines []string) {
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "STEP STATE ") {
			continue
		}
		end := i + 1
		for end < len(lines) && lines[end] != "" {
			end++
		}
		slices.Sort(lines[i+1 : end])
		i = end
	}
}
