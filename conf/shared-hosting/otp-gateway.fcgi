#!/bin/sh
# otp-gateway.fcgi — what mod_fcgid runs on shared hosting (see .htaccess): otp-fcgi with its
# settings file. mod_fcgid passes no environment (not even HOME) and a .htaccess cannot set one,
# so this names the file. The layout it assumes (docs/deploy.md "Shared hosting"):
#   ~/otp-gateway/bin/otp-fcgi, ~/otp-gateway/bin/otp-deleter, ~/otp-gateway/otp-gateway.env
#   ~/<web root>/otp-gateway.fcgi (this file, mode 0755), .htaccess, docs.html, …
# Edit OTP_HOME if yours differs. exec keeps the FastCGI socket on standard input.
OTP_HOME=$(dirname "$0")/../otp-gateway
OTP_ENV_FILE=$OTP_HOME/otp-gateway.env
export OTP_ENV_FILE
exec "$OTP_HOME/bin/otp-fcgi"
