package lifecycle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// MaxRequestBytes bounds the JSON body of a protocol request (load or
// initialize). A LoadRequest near its field limits is far smaller; anything
// larger is refused before it is parsed.
const MaxRequestBytes = 1 << 20

// DecodeLoadRequest reads one JSON LoadRequest from r and validates it. It
// reads at most MaxRequestBytes+1 bytes. Errors are [*Error]s ready for
// [WriteErr]: CodeTooLarge for an oversized body, CodeBadRequest for
// malformed JSON, trailing data or a field that fails
// [LoadRequest.Validate] (the message names the field). Unknown fields are
// ignored, so a newer dataplane can talk to an older agent.
func DecodeLoadRequest(r io.Reader) (LoadRequest, error) {
	var req LoadRequest
	if err := decodeJSON(r, &req); err != nil {
		return LoadRequest{}, err
	}
	if err := req.Validate(); err != nil {
		return LoadRequest{}, Errorf(CodeBadRequest, "load request: %v", err)
	}
	return req, nil
}

// DecodeInitializeRequest is [DecodeLoadRequest] for an InitializeRequest.
func DecodeInitializeRequest(r io.Reader) (InitializeRequest, error) {
	var req InitializeRequest
	if err := decodeJSON(r, &req); err != nil {
		return InitializeRequest{}, err
	}
	if err := req.Validate(); err != nil {
		return InitializeRequest{}, Errorf(CodeBadRequest, "initialize request: %v", err)
	}
	return req, nil
}

func decodeJSON(r io.Reader, v any) error {
	body, err := io.ReadAll(io.LimitReader(r, MaxRequestBytes+1))
	if err != nil {
		// A server that wraps the body in http.MaxBytesReader with a
		// smaller cap gets CodeTooLarge too.
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return Errorf(CodeTooLarge, "request body larger than %d bytes", MaxRequestBytes)
		}
		return Errorf(CodeBadRequest, "reading request body: %v", err)
	}
	if len(body) > MaxRequestBytes {
		return Errorf(CodeTooLarge, "request body larger than %d bytes", MaxRequestBytes)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Errorf(CodeBadRequest, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		return Errorf(CodeBadRequest, "malformed JSON: %v", err)
	}
	if dec.More() || dec.InputOffset() != int64(len(trimmed)) {
		return Errorf(CodeBadRequest, "trailing data after the JSON object")
	}
	return nil
}

// encodeJSON is the inverse of decodeJSON, used by the client.
func encodeJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: encoding %T: %w", v, err)
	}
	return b, nil
}
