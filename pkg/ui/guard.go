package ui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// User is who asks: empty Name for the local user of `deliver ui`.
type User struct {
	// Name is the authenticated user name; empty for the local user.
	Name string
	// Groups are the user's groups as the authenticator reported them.
	Groups []string
}

// Action is a closed enum of what a page may do. The zero value is not an
// action, so a forgotten field never authorises anything.
type Action int

const (
	// ActionReconcile asks the reconciler to run now.
	ActionReconcile Action = iota + 1
	// ActionPin pins an app to a revision.
	ActionPin
	// ActionUnpin removes an app's pin.
	ActionUnpin
	// ActionSuspend pauses an app in the reconciler (its inventory
	// Secret's reconcile.AnnotationSuspend).
	ActionSuspend
	// ActionResume removes that annotation.
	ActionResume
)

// String returns the action's name as pages and errors show it.
func (a Action) String() string {
	switch a {
	case ActionReconcile:
		return "reconcile"
	case ActionPin:
		return "pin"
	case ActionUnpin:
		return "unpin"
	case ActionSuspend:
		return "suspend"
	case ActionResume:
		return "resume"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// AppRef names an app for the guard.
type AppRef struct {
	// Environment is the app's environment.
	Environment string
	// Name is the app's name.
	Name string
	// InventoryNamespace is the namespace of the app's inventory Secret.
	InventoryNamespace string
	// InventoryName is the name of the app's inventory Secret.
	InventoryName string
}

// Guard decides who may see and do what. Every handler calls it; a nil
// Guard is refused at construction.
type Guard interface {
	// Identify authenticates the request (401 on error).
	Identify(r *http.Request) (User, error)
	// MayRead reports whether u may see app (of env, whose inventory is the
	// Secret invName in invNamespace).
	MayRead(ctx context.Context, u User, app AppRef) (bool, error)
	// MayAct reports whether u may perform a on app.
	MayAct(ctx context.Context, u User, app AppRef, a Action) (bool, error)
}

// ErrNotLoopback is returned by LocalGuard.Identify for a request that did
// not come from, or was not addressed to, the loopback interface.
var ErrNotLoopback = errors.New("the local view answers only loopback requests")

// LocalGuard allows everything to the local user: it is for `deliver ui`
// bound to localhost, where whoever can reach the port already holds the
// kubeconfig the view reads with. Identify still refuses requests whose
// RemoteAddr or Host is not loopback, so a port published by mistake or a
// DNS-rebinding page in the user's browser is not served.
type LocalGuard struct{}

// Identify returns the local user for a loopback request.
func (LocalGuard) Identify(r *http.Request) (User, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !IsLoopback(host) {
		return User{}, fmt.Errorf("identify %s: %w", r.RemoteAddr, ErrNotLoopback)
	}
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	if !IsLoopback(h) {
		// A browser sends the name it resolved; anything but a loopback
		// name means a page elsewhere made the browser call us.
		return User{}, fmt.Errorf("identify host %q: %w", r.Host, ErrNotLoopback)
	}
	return User{}, nil
}

// MayRead allows every app.
func (LocalGuard) MayRead(context.Context, User, AppRef) (bool, error) { return true, nil }

// MayAct allows every action.
func (LocalGuard) MayAct(context.Context, User, AppRef, Action) (bool, error) { return true, nil }

// isLoopback reports whether host (an IP or a name, without port) is the
// loopback interface.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
