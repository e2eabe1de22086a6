-- Realistic sample data for the demo: players, quizzes, questions, answers.
SELECT setseed(0.42);
INSERT INTO users (telegram_user_id, username, language_code, created_at)
SELECT 100000000 + g * 7919, 'player_' || g, (ARRAY['en', 'de', 'es', 'ru', 'uk'])[1 + g % 5],
       timestamptz '2026-01-01 00:00:00+00' + g * interval '37 minutes'
FROM generate_series(1, 2000) g;

INSERT INTO quizzes (title, difficulty, settings, created_by)
SELECT 'Quiz #' || g || ': ' || (ARRAY['Capitals', 'Rivers', 'Physics', 'Films', 'Chess'])[1 + g % 5],
       (ARRAY['easy', 'medium', 'hard'])[1 + g % 3]::difficulty,
       jsonb_build_object('time_limit_s', 10 + g % 20, 'shuffle', g % 2 = 0),
       1 + g % 2000
FROM generate_series(1, 40) g;

INSERT INTO questions (quiz_id, position, body, options, correct_option)
SELECT q, p, 'Question ' || p || ' of quiz ' || q || E' — naïve café? tab\there',
       jsonb_build_array('A ' || md5((q * 100 + p)::text), 'B', 'C', 'D'), p % 4
FROM generate_series(1, 40) q, generate_series(1, 10) p;

INSERT INTO answers (question_id, user_id, chosen_option, is_correct, answered_at)
SELECT 1 + g % 400, 1 + (g * 13) % 2000, g % 4, g % 4 = (1 + g % 400) % 10 % 4,
       timestamptz '2026-02-01 00:00:00+00' + g * interval '11 seconds'
FROM generate_series(1, 30000) g;

INSERT INTO scores (user_id, points, streak)
SELECT user_id, count(*) FILTER (WHERE is_correct) * 10, max(chosen_option)
FROM answers GROUP BY user_id;

INSERT INTO processed_updates (update_id, processed_at)
SELECT 500000000 + g, timestamptz '2026-02-01 00:00:00+00' + g * interval '3 seconds'
FROM generate_series(1, 50000) g;
