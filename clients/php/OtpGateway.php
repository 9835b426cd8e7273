<?php
// OtpGateway.php — a PHP client of otp-gateway (PHP 8.2 with the curl extension, no framework).
//
//   require 'OtpGateway.php';
//   $gw = new OtpGateway('http://127.0.0.1:55155', getenv('OTP_GATEWAY_API_KEY') ?: null);
//   $sent = $gw->sendOtp('123456789', '483920', 60);   // ['message_id' => 42, 'delete_at' => …]
//   $gw->revokeOtp('123456789', $sent['message_id']);  // once the code was used
//
// Every answer that is not a success throws OtpGatewayException with the HTTP status, the
// gateway's JSON `detail` (a string, or FastAPI's list of field errors for a 422) and the
// `Retry-After` seconds of a 429 or 503. The API: docs/api.md.
declare(strict_types=1);

final class OtpGatewayException extends RuntimeException
{
    /**
     * @param int $status HTTP status; 0 when no answer came (connection refused, timeout)
     * @param mixed $detail the JSON body's `detail`, or null
     * @param int|null $retryAfter seconds from `Retry-After`, or null
     */
    public function __construct(
        string $message,
        public readonly int $status = 0,
        public readonly mixed $detail = null,
        public readonly ?int $retryAfter = null,
    ) {
        parent::__construct($message, $status);
    }
}

final class OtpGateway
{
    private string $baseUrl;

    public function __construct(
        string $baseUrl,
        private ?string $apiKey = null,
        private int $timeoutSeconds = 15,
    ) {
        $this->baseUrl = rtrim($baseUrl, '/');
    }

    /**
     * Sends the code to the chat; the gateway deletes the message after $expireSeconds (5-60,
     * or its default when null). Returns the answer: success, message_id, sent_at, delete_at,
     * chat_id.
     */
    public function sendOtp(string $chatId, string $otp, ?int $expireSeconds = null): array
    {
        $body = ['chat_id' => $chatId, 'otp' => $otp];
        if ($expireSeconds !== null) {
            $body['expire_seconds'] = $expireSeconds;
        }
        [, $answer] = $this->post('/send-otp', $body);
        return $answer;
    }

    /**
     * Deletes a code's message now that it has been used. Returns the answer with its status
     * added as `status`: 200 deleted at once, 202 handed to otp-deleter (deleted shortly).
     * A message no longer pending is 404: an OtpGatewayException like every other refusal.
     */
    public function revokeOtp(string $chatId, int $messageId): array
    {
        [$status, $answer] = $this->post('/revoke-otp', ['chat_id' => $chatId, 'message_id' => $messageId]);
        return ['status' => $status] + $answer;
    }

    /** @return array{int, array} the status and the decoded JSON body of a 2xx answer */
    private function post(string $path, array $body): array
    {
        $headers = ['Content-Type: application/json', 'Accept: application/json'];
        if ($this->apiKey !== null && $this->apiKey !== '') {
            $headers[] = 'X-API-Key: ' . $this->apiKey;
        }
        $retryAfter = null;
        $ch = curl_init($this->baseUrl . $path);
        curl_setopt_array($ch, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => json_encode($body, JSON_THROW_ON_ERROR),
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => $this->timeoutSeconds,
            CURLOPT_HEADERFUNCTION => function ($ch, string $line) use (&$retryAfter): int {
                if (preg_match('/^Retry-After:\s*(\d+)\s*$/i', $line, $m)) {
                    $retryAfter = (int) $m[1];
                }
                return strlen($line);
            },
        ]);
        $raw = curl_exec($ch);
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $error = curl_error($ch);
        curl_close($ch);
        // the request body held the code: drop our copy of it now
        unset($body);
        if ($raw === false) {
            throw new OtpGatewayException("otp-gateway unreachable: $error");
        }
        $answer = json_decode($raw, true);
        if ($status < 200 || $status > 299 || !is_array($answer)) {
            $detail = is_array($answer) ? ($answer['detail'] ?? null) : null;
            $text = is_string($detail) ? $detail : json_encode($detail);
            throw new OtpGatewayException("otp-gateway answered $status: $text", $status, $detail, $retryAfter);
        }
        return [$status, $answer];
    }
}
