<?php
// What Laravel's cookie jar reads for the cookies it makes.
return ['path' => '/', 'domain' => null, 'secure' => false, 'same_site' => 'lax'];
