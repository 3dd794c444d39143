-- Instagram: the login an account was connected with (issue 24 item 4): `instagram`
-- (Instagram Login, graph.instagram.com) or `facebook` (Facebook Login, graph.facebook.com).
-- NULL, as for every account stored before this: `platforms.instagram.login` decides.
ALTER TABLE accounts ADD COLUMN instagram_login TEXT;
