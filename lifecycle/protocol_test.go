package lifecycle

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCodesAreClosedAndSorted(t *testing.T) {
	codes := Codes()
	require.Len(t, codes, 19)
	require.True(t, slices.IsSorted(codes))
	for _, c := range codes {
		require.True(t, c.Valid(), c)
		require.GreaterOrEqual(t, c.Status(), 400, c)
	}
	require.False(t, ErrorCode("nope").Valid())
	require.Equal(t, http.StatusInternalServerError, ErrorCode("nope").Status())
}

func TestErrorIsMatchesSentinelsByCode(t *testing.T) {
	e := Errorf(CodeInitFailed, "boom %d", 1)
	require.Equal(t, http.StatusBadGateway, e.Status)
	require.Equal(t, "faas: init_failed: boom 1", e.Error())
	wrapped := fmt.Errorf("calling agent: %w", e)
	require.ErrorIs(t, wrapped, CodeInitFailed)
	require.NotErrorIs(t, wrapped, CodeLoadFailed)
	// Another *Error is not a sentinel, even with the same code.
	require.False(t, errors.Is(e, &Error{Code: CodeInitFailed}))
	require.Equal(t, "not_ready", CodeNotReady.Error())
	require.Equal(t, "not_ready", fmt.Sprint(CodeNotReady), "prints as the code")
}

func TestErrorFromResponse(t *testing.T) {
	require.Nil(t, ErrorFromResponse(&http.Response{StatusCode: 200, Header: http.Header{}}))
	// A 502 from something that is not an agent (no code header).
	got := ErrorFromResponse(&http.Response{StatusCode: 502, Header: http.Header{}})
	require.Equal(t, CodeInstanceFailure, got.Code)
	require.Equal(t, 502, got.Status)
	require.Equal(t, "unexpected HTTP status 502", got.Message)
	// An unknown code keeps its message but not its code.
	h := http.Header{}
	h.Set(HeaderErrorCode, "made_up")
	h.Set(HeaderErrorMessage, "hi")
	got = ErrorFromResponse(&http.Response{StatusCode: 404, Header: h})
	require.Equal(t, &Error{Code: CodeInstanceFailure, Message: "hi", Status: 404}, got)
}

func TestControlTokens(t *testing.T) {
	a, b := NewControlToken(), NewControlToken()
	require.NotEqual(t, a, b)
	require.True(t, ValidControlToken(a))
	for _, bad := range []string{"", "short", strings.Repeat("x", MaxControlTokenLen+1), "has a space in it here", "nul\x00byte-0123456789"} {
		require.False(t, ValidControlToken(bad), "%q", bad)
	}
	// A Control prints and logs its address, never its token.
	c := Control{Addr: "10.0.0.1:8081", Token: a}
	require.Equal(t, "10.0.0.1:8081", c.String())
	require.Equal(t, "10.0.0.1:8081", c.LogValue().String())
	require.NotContains(t, fmt.Sprint(c), a)
}
