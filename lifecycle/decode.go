package lifecycle

import (
	"encoding/json"
	"fmt"
)

// encodeJSON is the inverse of decodeJSON, used by the client.
func encodeJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("lifecycle: encoding %T: %w", v, err)
	}
	return b, nil
}
