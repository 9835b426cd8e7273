<?php
// signin-example.php — a sign-in page with a code sent through otp-gateway, using OtpGateway.php.
//
//   OTP_GATEWAY_URL=http://127.0.0.1:55155 SIGNIN_HMAC_KEY=$(openssl rand -hex 32) \
//     php -S 127.0.0.1:8080 clients/php/signin-example.php
//
// The flow the gateway exists for: make a code (random_int), send it, keep only its keyed hash
// and expiry in the session (never the code), compare what the user types in constant time
// (hash_equals), allow a few tries, then revoke the message: at once on success, and when the
// attempt is locked. OTP_GATEWAY_API_KEY is sent when set.
declare(strict_types=1);

require __DIR__ . '/OtpGateway.php';

const CODE_DIGITS = 6;
const EXPIRE_SECONDS = 60;
const MAX_TRIES = 3;

function page_config(): array
{
    $key = getenv('SIGNIN_HMAC_KEY');
    if ($key === false || strlen($key) < 32) {
        http_response_code(500);
        exit("SIGNIN_HMAC_KEY must be set (32 characters or more)\n");
    }
    return [new OtpGateway(getenv('OTP_GATEWAY_URL') ?: 'http://127.0.0.1:55155',
                           getenv('OTP_GATEWAY_API_KEY') ?: null), $key];
}

function code_hash(string $key, string $code): string
{
    return hash_hmac('sha256', $code, $key);
}

function h(string $s): string
{
    return htmlspecialchars($s, ENT_QUOTES | ENT_HTML5, 'UTF-8');
}

/** Deletes the code's message; a message already gone (404) is what we wanted. */
function revoke(OtpGateway $gw, array $otp): string
{
    try {
        $r = $gw->revokeOtp($otp['chat_id'], $otp['message_id']);
        return "the message with the code was revoked ({$r['status']})";
    } catch (OtpGatewayException $e) {
        return $e->status === 404 ? 'the message with the code was already gone'
                                  : "revoking the message failed: {$e->getMessage()}";
    }
}

function send_code(OtpGateway $gw, string $key, string $chatId): array
{
    if (!preg_match('/^-?\d{1,20}$/', $chatId)) {
        return ['ask-chat', 'A Telegram chat id is digits (a group\'s starts with -).'];
    }
    $code = str_pad((string) random_int(0, 10 ** CODE_DIGITS - 1), CODE_DIGITS, '0', STR_PAD_LEFT);
    $hash = code_hash($key, $code);
    try {
        $sent = $gw->sendOtp($chatId, $code, EXPIRE_SECONDS);
    } catch (OtpGatewayException $e) {
        $wait = $e->retryAfter !== null ? " Try again in {$e->retryAfter} s." : '';
        $detail = is_string($e->detail) ? $e->detail : 'the request was refused';
        return ['ask-chat', "The code could not be sent ($e->status: $detail).$wait"];
    } finally {
        unset($code);
    }
    $_SESSION['otp'] = ['chat_id' => $chatId, 'message_id' => (int) $sent['message_id'],
                        'hash' => $hash, 'expires' => time() + EXPIRE_SECONDS, 'tries' => 0];
    return ['ask-code', 'A code is on its way to your Telegram chat. It vanishes in ' . EXPIRE_SECONDS . ' s.'];
}

function check_code(OtpGateway $gw, string $key, string $typed): array
{
    $otp = $_SESSION['otp'] ?? null;
    if ($otp === null) {
        return ['ask-chat', 'No code is pending: ask for one.'];
    }
    if (time() > $otp['expires']) {
        unset($_SESSION['otp']);
        return ['ask-chat', 'The code expired: ask for a new one.'];
    }
    // always compare (a malformed entry compares unequal), in constant time
    if (hash_equals($otp['hash'], code_hash($key, trim($typed)))) {
        unset($_SESSION['otp']);
        session_regenerate_id(true);
        $_SESSION['user'] = $otp['chat_id'];
        return ['signed-in', 'Signed in; ' . revoke($gw, $otp) . '.'];
    }
    $otp['tries']++;
    if ($otp['tries'] >= MAX_TRIES) {
        unset($_SESSION['otp']);
        return ['locked', MAX_TRIES . ' wrong codes: this attempt is locked; ' . revoke($gw, $otp) .
                          '. Ask for a new code.'];
    }
    $_SESSION['otp'] = $otp;
    $left = MAX_TRIES - $otp['tries'];
    return ['ask-code', "Wrong code: $left " . ($left === 1 ? 'try' : 'tries') . ' left.'];
}

ini_set('session.use_strict_mode', '1');
ini_set('session.cookie_httponly', '1');
ini_set('session.cookie_samesite', 'Strict');
session_start();
[$gw, $key] = page_config();
$_SESSION['csrf'] ??= bin2hex(random_bytes(16));
$state = isset($_SESSION['user']) ? 'signed-in' : (isset($_SESSION['otp']) ? 'ask-code' : 'ask-chat');
$note = '';
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    if (!hash_equals($_SESSION['csrf'], (string) ($_POST['csrf'] ?? ''))) {
        http_response_code(403);
        exit("This form has expired: reload the page.\n");
    }
    switch ($_POST['action'] ?? '') {
        case 'send':
            [$state, $note] = send_code($gw, $key, trim((string) ($_POST['chat_id'] ?? '')));
            break;
        case 'check':
            [$state, $note] = check_code($gw, $key, (string) ($_POST['code'] ?? ''));
            break;
        case 'sign-out':
            $_SESSION = [];
            session_regenerate_id(true);
            $_SESSION['csrf'] = bin2hex(random_bytes(16));
            [$state, $note] = ['ask-chat', 'Signed out.'];
            break;
    }
}
$csrf = '<input type="hidden" name="csrf" value="' . h($_SESSION['csrf']) . '">';
?><!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in with a Telegram code</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 26rem; margin: 3rem auto; padding: 0 1rem; }
label, input, button { display: block; width: 100%; box-sizing: border-box; }
input, button { font: inherit; padding: .5rem; margin: .25rem 0 1rem; }
#note { padding: .5rem; background: #eef; border-radius: 4px; }
</style>
</head>
<body data-state="<?= h($state) ?>">
<h1>Sign in</h1>
<?php if ($note !== ''): ?>
<p id="note" role="status"><?= h($note) ?></p>
<?php endif ?>
<?php if ($state === 'signed-in'): ?>
<p id="welcome">Signed in as chat <?= h($_SESSION['user']) ?>.</p>
<form method="post"><?= $csrf ?><button name="action" value="sign-out">Sign out</button></form>
<?php elseif ($state === 'ask-code'): ?>
<form method="post"><?= $csrf ?>
<label for="code">The code from Telegram</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="<?= CODE_DIGITS ?>" required autofocus>
<button id="check" name="action" value="check">Sign in</button>
</form>
<?php else: ?>
<form method="post"><?= $csrf ?>
<label for="chat-id">Your Telegram chat id</label>
<input id="chat-id" name="chat_id" inputmode="numeric" required autofocus>
<button id="send" name="action" value="send">Send me a code</button>
</form>
<?php endif ?>
</body>
</html>
