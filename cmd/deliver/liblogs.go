package main

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	sopslogging "github.com/getsops/sops/v3/logging"
	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

// routeLibraryLogs sends what the libraries deliver runs write to their
// own global loggers through l, so that it is redacted and in the format
// asked for (one JSON object per line with --log-format json) instead of
// going to stderr as it is: Helm's warnings (the standard library's
// logger), client-go's (klog) and sops' (logrus). The loggers are the
// process's: only main's command setup calls this.
func routeLibraryLogs(l *slog.Logger) {
	log.SetFlags(0)
	log.SetOutput(stdlogWriter{l})
	klog.SetSlogLogger(l.With("logger", "klog"))
	for _, lg := range sopslogging.Loggers {
		lg.SetOutput(io.Discard)
		lg.ReplaceHooks(logrus.LevelHooks{})
		lg.AddHook(logrusHook{l})
	}
}

// stdlogWriter logs each line the standard library's logger writes as a
// warning: Helm writes its warnings there ("Warning: ...", "info: skipping
// unknown hook").
type stdlogWriter struct{ l *slog.Logger }

func (w stdlogWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		if line = strings.TrimSpace(line); line != "" {
			w.l.Warn(line, "logger", "log")
		}
	}
	return len(p), nil
}

// logrusHook logs a sops logrus entry at its level, with its fields.
type logrusHook struct{ l *slog.Logger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	case e.Level == logrus.InfoLevel:
		level = slog.LevelInfo
	}
	args := []any{"logger", "sops"}
	for k, v := range e.Data {
		args = append(args, k, v)
	}
	h.l.Log(context.Background(), level, e.Message, args...)
	return nil
}
