package hub

import "context"

type afterAnswerKey struct{}

// AfterAnswer returns a context for work a request leaves running once it
// has been answered (a hook it started): it keeps ctx's values, such as
// the request id, but not its cancellation or deadline, and says what it
// is, so that what such work costs can be told from what the caller waited
// for.
func AfterAnswer(ctx context.Context) context.Context {
	return context.WithValue(context.WithoutCancel(ctx), afterAnswerKey{}, true)
}

// IsAfterAnswer reports whether ctx comes from AfterAnswer.
func IsAfterAnswer(ctx context.Context) bool {
	v, _ := ctx.Value(afterAnswerKey{}).(bool)
	return v
}
