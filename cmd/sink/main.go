// Command sink is a capturing SMTP server for the demo: it accepts every message and writes each
// transaction to DIR as NNN.eml (the message) and NNN.json (envelope, time, size) until killed.
//
//	sink -listen 127.0.0.1:2526 -dir DIR
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"appliance/internal/sink"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:2526", "address to accept SMTP on")
	dir := flag.String("dir", "", "directory for NNN.eml and NNN.json (required)")
	maxBytes := flag.Int64("max-message-bytes", 0, "largest message accepted; 0 means no limit")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: sink -listen ADDR -dir DIR\n\nA next-hop SMTP server that stores what it receives.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *dir == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	notify := func(tx sink.Transaction) {
		log.Info("received", "file", tx.File, "mail_from", tx.MailFrom, "rcpt_to", tx.RcptTo, "size", tx.Size)
	}
	s, err := sink.Start(sink.Options{Addr: *listen, Dir: *dir, MaxMessageBytes: *maxBytes, Notify: notify})
	if err != nil {
		log.Error("failed to start", "err", err)
		os.Exit(1)
	}
	log.Info("listening", "addr", s.Addr(), "dir", *dir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := s.Close(); err != nil {
		log.Error("failed to stop", "err", err)
		os.Exit(1)
	}
}
