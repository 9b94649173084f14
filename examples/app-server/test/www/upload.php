<?php
// The usual upload, as the PHP manual shows it: is_uploaded_file(), then
// move_uploaded_file() out of the temporary directory.
//   ?then=fatal   then a fatal error, with the upload still in PHP's list
//   ?then=exit    then exit(), the same
header('Content-Type: application/json');
$file = $_FILES['upload'] ?? null;
$out = ['name' => $file['name'] ?? null, 'uploaded' => $file !== null && is_uploaded_file($file['tmp_name']), 'this script' => is_uploaded_file(__FILE__)];
if ($file !== null && !isset($_GET['then'])) {
    $to = tempnam(sys_get_temp_dir(), 'moved');
    $out['moved'] = move_uploaded_file($file['tmp_name'], $to);
    $out['content'] = file_get_contents($to);
    $out['still uploaded'] = is_uploaded_file($file['tmp_name']);
    $out['moved again'] = @move_uploaded_file($file['tmp_name'], $to);
    unlink($to);
}
echo json_encode($out);
match ($_GET['then'] ?? '') {
    'fatal' => no_such_function(),
    'exit' => exit(),
    default => null,
};
