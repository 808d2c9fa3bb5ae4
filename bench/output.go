package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/faasplane/faas/internal/svgplot"
)

func writeJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, name), append(b, '\n'))
}

func writeSVG(dir, name string, c *svgplot.Chart) error {
	var buf bytes.Buffer
	if err := c.Render(&buf); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, name), buf.Bytes())
}

// writeFile replaces path atomically.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// relLink is target relative to the directory of the markdown file md,
// with forward slashes, for a link in it.
func relLink(md, target string) string {
	r, err := filepath.Rel(filepath.Dir(md), target)
	if err != nil {
		return filepath.ToSlash(target)
	}
	return filepath.ToSlash(r)
}

func markers(name string) (start, end string) {
	return "<!-- bench:" + name + ":start -->", "<!-- bench:" + name + ":end -->"
}

// replaceBlocks replaces the content between each block's markers. Blocks
// that have no markers in doc are appended at its end, with their markers,
// so that a later run replaces them in place; everything outside the
// markers is kept byte for byte.
func replaceBlocks(doc string, blocks map[string]string) (string, error) {
	names := make([]string, 0, len(blocks))
	for n := range blocks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		body := strings.TrimSpace(blocks[name])
		start, end := markers(name)
		i := strings.Index(doc, start)
		j := strings.Index(doc, end)
		switch {
		case i < 0 && j < 0:
			doc = strings.TrimRight(doc, "\n") + "\n\n" + start + "\n" + body + "\n" + end + "\n"
		case i < 0 || j < i || strings.Count(doc, start) > 1 || strings.Count(doc, end) > 1:
			return "", fmt.Errorf("markdown: block %q has unbalanced or repeated markers", name)
		default:
			doc = doc[:i+len(start)] + "\n" + body + "\n" + doc[j:]
		}
	}
	return doc, nil
}

func updateMarkdown(path string, blocks map[string]string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc, err := replaceBlocks(string(old), blocks)
	if err != nil {
		return err
	}
	return writeFile(path, []byte(doc))
}

// table renders a markdown table; align holds one of "l" or "r" per column.
func table(header []string, align string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for i := range header {
		if i < len(align) && align[i] == 'r' {
			b.WriteString(" ---: |")
		} else {
			b.WriteString(" --- |")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// header is what every generated block starts with: the machine, the
// date, the load around the run, the exact command and how the figures
// were repeated.
func header(m Meta, runs string) string {
	return fmt.Sprintf("Machine: %s. Run: %s, %.0f s; %s.\n\n```sh\n%s\n```\n\nRepetition: %s.\n",
		m.Machine(), m.Start.Format("2006-01-02 15:04 UTC"), m.Seconds, m.Load(), m.Command, runs)
}
