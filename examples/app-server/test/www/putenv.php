<?php
// putenv() as a script finds it: ?set=V sets FOLK_TEST_PUTENV to V first.
// PHP undoes a request's putenv() calls when it ends (test/http.test.ts).
if (isset($_GET['set'])) {
    putenv('FOLK_TEST_PUTENV=' . $_GET['set']);
}
echo json_encode(getenv('FOLK_TEST_PUTENV'));
