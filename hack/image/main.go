package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
)

func main() {
	opts := NewOptions()
	fs := flag.NewFlagSet("nsprov-image", flag.ContinueOnError)
	opts.AddFlags(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if err := run(opts); err != nil {
		fmt.Fprintf(os.Stderr, "nsprov-image: %v\n", err)
		os.Exit(1)
	}
}

func run(opts *Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := Build(ctx, *opts)
	if err != nil {
		return err
	}
	fmt.Printf("%s (index, %s)\n", res.Digest, res.OCIDir)
	for _, p := range res.Platforms {
		fmt.Printf("%s %s %s\n", res.Images[p], p, res.Tarballs[p])
	}
	return nil
}

// AddFlags binds the options to fs. SOURCE_DATE_EPOCH in the environment is
// the default of --source-date-epoch.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.SourceDir, "source-dir", o.SourceDir, "nsprov's source tree (the directory of its go.mod)")
	fs.StringVar(&o.OutDir, "out", o.OutDir, "output directory: the OCI image layout goes to OUT/oci, the docker-load tarballs to OUT/nsprov-ARCH.tar")
	fs.Func("platform", "comma-separated os/arch platforms to build (default "+strings.Join(o.Platforms, ",")+")", func(s string) error {
		o.Platforms = strings.Split(s, ",")
		return nil
	})
	fs.StringVar(&o.Version, "version", o.Version, "nsprov version: stamped into the binary, the version label and the tag")
	fs.StringVar(&o.Revision, "revision", o.Revision, "source revision (git commit) for the revision label")
	fs.StringVar(&o.Source, "source", o.Source, "source repository URL for the source label")
	fs.StringVar(&o.Repository, "repository", o.Repository, "image repository the tarballs are tagged with (REPOSITORY:VERSION)")
	fs.Int64Var(&o.Epoch, "source-date-epoch", o.Epoch, "creation time of the image in seconds since 1970 (default $SOURCE_DATE_EPOCH)")
	fs.StringVar(&o.Go, "go", o.Go, "go command that compiles nsprov")
}

// NewOptions returns the defaults: both release platforms, the repository
// and source a release publishes, and SOURCE_DATE_EPOCH if it is set (-1,
// which Validate refuses, if not).
func NewOptions() *Options {
	o := &Options{
		OutDir:     "bin/image",
		SourceDir:  ".",
		Platforms:  []string{"linux/amd64", "linux/arm64"},
		Source:     DefaultSource,
		Repository: DefaultRepository,
		Epoch:      -1,
		Go:         "go",
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			o.epochErr = fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds since 1970: set it to the commit time (git log -1 --format=%%ct) or pass --source-date-epoch", s)
		} else {
			o.Epoch = n
		}
	}
	return o
}
