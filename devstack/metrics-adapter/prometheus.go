package main

// Prometheus' HTTP API, the one call the adapter makes: an instant query (/api/v1/query).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// sample is one element of an instant vector.
type sample struct {
	Labels map[string]string
	Value  float64
	Time   time.Time
}

type prometheus struct {
	base string
	http *http.Client
}

func newPrometheus(base string) *prometheus {
	return &prometheus{base: strings.TrimRight(base, "/"), http: &http.Client{Timeout: 10 * time.Second}}
}

// query runs an instant query at the current time; the result must be a vector.
func (p *prometheus) query(ctx context.Context, promql string) ([]sample, error) {
	target := p.base + "/api/v1/query?" + url.Values{"query": {promql}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("prometheus: %w", err)
	}
	return parseVector(resp.StatusCode, body)
}

// parseVector reads an /api/v1/query answer: {"status", "error", "data": {"resultType",
// "result": [{"metric": {...}, "value": [<unix seconds>, "<number>"]}]}}.
func parseVector(status int, body []byte) ([]sample, error) {
	var answer struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, fmt.Errorf("prometheus answered %d, not JSON: %.200s", status, body)
	}
	if answer.Status != "success" {
		return nil, fmt.Errorf("prometheus answered %d: %s", status, answer.Error)
	}
	if answer.Data.ResultType != "vector" {
		return nil, fmt.Errorf("prometheus answered a %s, not a vector", answer.Data.ResultType)
	}
	out := make([]sample, 0, len(answer.Data.Result))
	for _, r := range answer.Data.Result {
		at, okTime := r.Value[0].(float64)
		text, okValue := r.Value[1].(string)
		if !okTime || !okValue {
			return nil, fmt.Errorf("prometheus answered a malformed sample: %v", r.Value)
		}
		value, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus answered a malformed value %q", text)
		}
		sec, frac := math.Modf(at)
		out = append(out, sample{r.Metric, value, time.Unix(int64(sec), int64(frac*1e9))})
	}
	return out, nil
}
