// Command benchresult writes a bench's figures in package result's schema
// for benches written in shell, in three steps:
//
//	benchresult new [-param KEY=VALUE]... FILE BENCH TITLE
//	    starts FILE with the machine's facts (load included) as they are now
//	benchresult add [-peer TOOL] [-target ratio<=0.5] [-chart box|bars|quantiles] [-scale X] FILE METRIC TOOL UNIT
//	    adds a metric whose samples are the numbers on stdin (each times X)
//	benchresult finish FILE OUT
//	    computes quantiles, ratios and targets, checks FILE and writes it to OUT
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/jobrun/jobrun/bench/internal/result"
)

func main() {
	if err := run(os.Args[1:], os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "benchresult:", err)
		os.Exit(2)
	}
}

type params map[string]string

func (p params) String() string { return fmt.Sprint(map[string]string(p)) }

func (p params) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("param %q: want KEY=VALUE", s)
	}
	p[k] = v
	return nil
}

func run(args []string, stdin io.Reader) error {
	if len(args) == 0 {
		return errors.New("usage: benchresult new, add or finish")
	}
	fs := flag.NewFlagSet("benchresult "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "new":
		ps := params{}
		fs.Var(ps, "param", "KEY=VALUE the bench ran with (repeatable)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 3 {
			return errors.New("usage: benchresult new [-param KEY=VALUE]... FILE BENCH TITLE")
		}
		f := result.New(fs.Arg(1), fs.Arg(2))
		for k, v := range ps {
			f.Param(k, v)
		}
		return f.Save(fs.Arg(0))
	case "add":
		peer := fs.String("peer", "", "the tool this one is compared with on the same metric")
		target := fs.String("target", "", "a goal such as ratio<=0.5 or p50<300")
		chart := fs.String("chart", "", "box, bars or quantiles (default: by the number of samples)")
		scale := fs.Float64("scale", 1, "multiply every sample by this (e.g. 0.001 for µs to ms)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 4 {
			return errors.New("usage: benchresult add [flags] FILE METRIC TOOL UNIT < samples")
		}
		f, err := result.Load(fs.Arg(0))
		if err != nil {
			return err
		}
		m := result.Metric{Metric: fs.Arg(1), Tool: fs.Arg(2), Unit: fs.Arg(3), Peer: *peer, Chart: *chart}
		if m.Samples, err = samples(stdin, *scale); err != nil {
			return fmt.Errorf("%s of %s: %w", m.Metric, m.Tool, err)
		}
		if len(m.Samples) == 0 {
			return fmt.Errorf("%s of %s: no samples on stdin", m.Metric, m.Tool)
		}
		if *target != "" {
			if m.Target, err = result.ParseTarget(*target); err != nil {
				return err
			}
		}
		f.Add(m)
		return f.Save(fs.Arg(0))
	case "finish":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 2 {
			return errors.New("usage: benchresult finish FILE OUT")
		}
		f, err := result.Load(fs.Arg(0))
		if err != nil {
			return err
		}
		return f.Write(fs.Arg(1))
	}
	return fmt.Errorf("unknown command %q: want new, add or finish", args[0])
}

// samples reads whitespace-separated numbers.
func samples(r io.Reader, scale float64) ([]float64, error) {
	var out []float64
	sc := bufio.NewScanner(r)
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		v, err := strconv.ParseFloat(sc.Text(), 64)
		if err != nil {
			return nil, fmt.Errorf("sample %d: %w", len(out)+1, err)
		}
		out = append(out, v*scale)
	}
	return out, sc.Err()
}
